"""The Dagster Definitions of the code location (the only core module importing Dagster)."""
from __future__ import annotations

from dagster import Definitions

from assets.study_pipeline import arrival_ledger, study_pipeline, study_pipeline_job
from resources import AxiomResource
from sensors.landing import landing_sensor

defs = Definitions(
    assets=[arrival_ledger, study_pipeline],
    jobs=[study_pipeline_job],
    sensors=[landing_sensor],
    resources={"axiom": AxiomResource()},
)
