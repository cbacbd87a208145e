"""The landing sensor: reads the arrival ledger after its cursor and requests runs for
batches of complete studies.

The cursor is the ledger id up to which every row was read (one integer; it waits before a
gap in the ids that may still fill, pipeline/batching.py). Which studies are waiting lives in
the state store, so it survives restarts. Run keys are batch ids (plus the attempt): a batch
requested twice (after a lost tick) still runs once per attempt.

Each tick also recovers batches whose run failed, was canceled or whose process died (kill
-9): the batch is requested again under a new run key after `retry_delay_seconds`, up to
`max_batch_attempts` runs (axiom_dagster.pipeline.recovery).
"""

from datetime import datetime, timezone

from dagster import DagsterInvariantViolationError, DagsterRunStatus, DefaultSensorStatus, RunRequest, RunsFilter, SensorEvaluationContext, SensorResult, sensor

from assets.study_pipeline import study_pipeline_job
from axiom_dagster.pipeline.batching import plan_tick
from axiom_dagster.pipeline.recovery import process_died, recover_batches, run_key
from axiom_dagster.store.state import Batch
from resources import AxiomResource


_ENDED = (DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED)


def batch_run_request(batch: Batch) -> RunRequest:
    return RunRequest(
        run_key=run_key(batch),
        partition_key=batch.partition,
        run_config={"ops": {"study_pipeline": {"config": {"batch_id": batch.id}}}},
        tags={"axiom/batch_id": str(batch.id), "axiom/studies": str(batch.studies),
              "axiom/attempt": str(batch.attempts)},
    )


def _run_failure(instance):
    """How the sensor learns from Dagster that a batch's run ended unfinished."""

    def check(batch: dict) -> str | None:
        if instance is None:  # a context without an instance (tests): the process check only
            return process_died(batch)
        if batch["run_id"]:
            run = instance.get_run_by_id(batch["run_id"])
        else:  # requested: a run that failed before the batch started (e.g. resource init)
            runs = instance.get_runs(filters=RunsFilter(tags={
                "axiom/batch_id": str(batch["id"]), "axiom/attempt": str(batch["attempts"])}), limit=1)
            run = runs[0] if runs else None
        if run is None:
            return None
        if run.status in _ENDED:
            return f"Dagster run {run.run_id} {run.status.value.lower()}"
        died = process_died(batch)
        if died and not run.is_finished:
            instance.report_run_failed(run, f"axiom: {died} (batch {batch['id']})")
        return died

    return check


def _instance(context: SensorEvaluationContext):
    try:
        return context.instance
    except DagsterInvariantViolationError:
        return None


@sensor(
    job=study_pipeline_job,
    minimum_interval_seconds=15,
    default_status=DefaultSensorStatus.RUNNING,
    description="Batches complete studies from the arrival ledger into pipeline runs.",
)
def landing_sensor(context: SensorEvaluationContext, axiom: AxiomResource) -> SensorResult:
    cursor = int(context.cursor or 0)
    now = datetime.now(timezone.utc)
    failed, retries = recover_batches(axiom.store, axiom.config.pipeline, now, _run_failure(_instance(context)))
    plan = plan_tick(axiom.store, axiom.config.pipeline, cursor, now)
    requests = [batch_run_request(b) for b in plan.new_batches + plan.stale_batches + retries]
    if requests or failed:
        context.log.info(
            f"ledger cursor {cursor} -> {plan.cursor}: {len(plan.new_batches)} new batches, "
            f"{len(plan.stale_batches)} re-requested, {len(failed)} failed runs noticed, "
            f"{len(retries)} batches retried"
        )
    return SensorResult(run_requests=requests, cursor=str(plan.cursor))
