"""The Dagster Definitions of the code location (the only core module importing Dagster)."""
from __future__ import annotations

from dagster import Definitions

from assets.ai_cache import ai_cache_export
from assets.catalog import catalog_compaction, catalog_compaction_job
from assets.crosswalks import crosswalk_definitions, lookup_reports_job, missing_keys_report
from assets.study_pipeline import CONFIG, arrival_ledger, study_pipeline, study_pipeline_job
from resources import AxiomResource
from sensors.crosswalks import crosswalk_schedules, hourly_lookup_reports
from sensors.landing import landing_sensor
from sensors.schedules import nightly_catalog_compaction

# Crosswalk assets and schedules come from the configuration ($AXIOM_CONFIG or config/axiom.yaml).
crosswalk_assets, crosswalk_jobs = crosswalk_definitions(CONFIG)

defs = Definitions(
    assets=[arrival_ledger, study_pipeline, catalog_compaction, *crosswalk_assets, missing_keys_report, ai_cache_export],
    jobs=[study_pipeline_job, catalog_compaction_job, *crosswalk_jobs.values(), lookup_reports_job],
    sensors=[landing_sensor],
    schedules=[nightly_catalog_compaction, *crosswalk_schedules(CONFIG, crosswalk_jobs), hourly_lookup_reports],
    resources={"axiom": AxiomResource()},
)
