"""The Dagster Definitions of the code location (the only core module importing Dagster)."""
from __future__ import annotations

from dagster import Definitions

from assets.ai_cache import ai_cache_export
from assets.backfill import source_definitions
from assets.catalog import catalog_compaction, catalog_compaction_job, catalog_tables
from assets.crosswalks import crosswalk_definitions, lookup_reports_job, missing_keys_report
from assets.delivery import build_delivery_job
from assets.retention import dagster_event_log_retention, dagster_retention_job
from assets.study_pipeline import CONFIG, arrival_ledger, study_pipeline, study_pipeline_job
from axiom_dagster.ingest.redaction import install_log_redaction
from resources import AxiomResource, DestinationsResource
from sensors.crosswalks import crosswalk_schedules, hourly_lookup_reports
from sensors.delivery import build_delivery_sensor
from sensors.landing import landing_sensor
from sensors.schedules import nightly_catalog_compaction

install_log_redaction()  # pydicom's messages quote element values: redacted in every run

# Per-configuration definitions ($AXIOM_CONFIG or config/axiom.yaml, read at load time):
# one delivery op and pool per destination, crosswalk assets and schedules, source assets.
delivery_job = build_delivery_job([d.name for d in CONFIG.destinations])
crosswalk_assets, crosswalk_jobs = crosswalk_definitions(CONFIG)

defs = Definitions.merge(
    Definitions(
        assets=[arrival_ledger, study_pipeline, catalog_tables, catalog_compaction,
                *crosswalk_assets, missing_keys_report, ai_cache_export],
        jobs=[study_pipeline_job, catalog_compaction_job, delivery_job, dagster_retention_job,
              *crosswalk_jobs.values(), lookup_reports_job],
        sensors=[landing_sensor, build_delivery_sensor(delivery_job)],
        schedules=[nightly_catalog_compaction, dagster_event_log_retention,
                   *crosswalk_schedules(CONFIG, crosswalk_jobs), hourly_lookup_reports],
        resources={"axiom": AxiomResource(), "destinations": DestinationsResource(axiom=AxiomResource())},
    ),
    # Backfill assets, poll sensors and retrieval jobs of the configured sources.
    source_definitions(CONFIG),
)
