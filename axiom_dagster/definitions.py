"""The Dagster Definitions of the code location (the only core module importing Dagster)."""
from __future__ import annotations

from dagster import Definitions

from assets.backfill import source_definitions
from assets.catalog import catalog_compaction, catalog_compaction_job, catalog_tables
from assets.delivery import build_delivery_job
from assets.retention import dagster_event_log_retention, dagster_retention_job
from assets.study_pipeline import arrival_ledger, study_pipeline, study_pipeline_job
from axiom_dagster.config.settings import load_default_config
from axiom_dagster.ingest.redaction import install_log_redaction
from resources import AxiomResource, DestinationsResource
from sensors.delivery import build_delivery_sensor
from sensors.landing import landing_sensor
from sensors.schedules import nightly_catalog_compaction

install_log_redaction()  # pydicom's messages quote element values: redacted in every run

config = load_default_config()
# One delivery op (and concurrency pool) per configured destination, named at load time.
delivery_job = build_delivery_job([d.name for d in config.destinations])

defs = Definitions.merge(
    Definitions(
        assets=[arrival_ledger, study_pipeline, catalog_tables, catalog_compaction],
        jobs=[study_pipeline_job, catalog_compaction_job, delivery_job, dagster_retention_job],
        sensors=[landing_sensor, build_delivery_sensor(delivery_job)],
        schedules=[nightly_catalog_compaction, dagster_event_log_retention],
        resources={"axiom": AxiomResource(), "destinations": DestinationsResource(axiom=AxiomResource())},
    ),
    # Backfill assets, poll sensors and retrieval jobs of the configured sources.
    source_definitions(config),
)
