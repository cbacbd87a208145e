"""The landing sensor: reads the arrival ledger after its cursor and requests runs for
batches of complete studies.

The cursor is the ledger's high-water mark (one integer). Which studies are waiting lives in
the state store, so it survives restarts. Run keys are batch ids: a batch requested twice
(after a lost tick) still runs once.
"""

from datetime import datetime, timezone

from dagster import DefaultSensorStatus, RunRequest, SensorEvaluationContext, SensorResult, sensor

from assets.study_pipeline import study_pipeline_job
from axiom_dagster.pipeline.batching import plan_tick
from axiom_dagster.store.state import Batch
from resources import AxiomResource


def batch_run_request(batch: Batch) -> RunRequest:
    return RunRequest(
        run_key=f"batch-{batch.id}",
        partition_key=batch.partition,
        run_config={"ops": {"study_pipeline": {"config": {"batch_id": batch.id}}}},
        tags={"axiom/batch_id": str(batch.id), "axiom/studies": str(batch.studies)},
    )


@sensor(
    job=study_pipeline_job,
    minimum_interval_seconds=15,
    default_status=DefaultSensorStatus.RUNNING,
    description="Batches complete studies from the arrival ledger into pipeline runs.",
)
def landing_sensor(context: SensorEvaluationContext, axiom: AxiomResource) -> SensorResult:
    cursor = int(context.cursor or 0)
    plan = plan_tick(axiom.store, axiom.config.pipeline, cursor, datetime.now(timezone.utc))
    requests = [batch_run_request(b) for b in plan.new_batches + plan.stale_batches]
    if requests:
        context.log.info(
            f"ledger cursor {cursor} -> {plan.cursor}: {len(plan.new_batches)} new batches, "
            f"{len(plan.stale_batches)} re-requested"
        )
    return SensorResult(run_requests=requests, cursor=str(plan.cursor))
