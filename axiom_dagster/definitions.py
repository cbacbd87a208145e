"""The Dagster Definitions of the code location (the only core module importing Dagster)."""
from __future__ import annotations

from dagster import Definitions

from assets.catalog import catalog_compaction, catalog_compaction_job
from assets.delivery import build_delivery_job
from assets.study_pipeline import arrival_ledger, study_pipeline, study_pipeline_job
from axiom_dagster.config.settings import load_default_config
from resources import AxiomResource, DestinationsResource
from sensors.delivery import build_delivery_sensor
from sensors.landing import landing_sensor
from sensors.schedules import nightly_catalog_compaction

# One delivery op (and concurrency pool) per configured destination, named at load time.
delivery_job = build_delivery_job([d.name for d in load_default_config().destinations])

defs = Definitions(
    assets=[arrival_ledger, study_pipeline, catalog_compaction],
    jobs=[study_pipeline_job, catalog_compaction_job, delivery_job],
    sensors=[landing_sensor, build_delivery_sensor(delivery_job)],
    schedules=[nightly_catalog_compaction],
    resources={"axiom": AxiomResource(), "destinations": DestinationsResource(axiom=AxiomResource())},
)
