"""The Dagster Definitions of the code location (the only core module importing Dagster)."""
from __future__ import annotations

from dagster import Definitions

from assets.backfill import source_definitions
from assets.catalog import catalog_compaction, catalog_compaction_job, catalog_tables
from assets.retention import dagster_event_log_retention, dagster_retention_job
from assets.study_pipeline import arrival_ledger, study_pipeline, study_pipeline_job
from axiom_dagster.ingest.redaction import install_log_redaction
from axiom_dagster.config.settings import load_default_config
from resources import AxiomResource
from sensors.landing import landing_sensor
from sensors.schedules import nightly_catalog_compaction

install_log_redaction()  # pydicom's messages quote element values: redacted in every run

defs = Definitions.merge(
    Definitions(
        assets=[arrival_ledger, study_pipeline, catalog_tables, catalog_compaction],
        jobs=[study_pipeline_job, catalog_compaction_job, dagster_retention_job],
        sensors=[landing_sensor],
        schedules=[nightly_catalog_compaction, dagster_event_log_retention],
        resources={"axiom": AxiomResource()},
    ),
    # Backfill assets, poll sensors and retrieval jobs of the configured sources.
    source_definitions(load_default_config()),
)
