"""The delivery (retry) sensor: when instances are due — new pending copies from the study
pipeline, failures whose backoff has run out, or `sent` claims of a crashed run — it requests
one delivery run for all of them (never one run per instance or per study).

At most MAX_ACTIVE_RUNS delivery runs are queued or running at once; each op claims its
destination's due rows atomically, so overlapping runs never send an instance twice, and a
slow destination holds only its own pool slot. The cursor is a request counter (one integer).
"""

from dagster import DagsterRunStatus, RunRequest, RunsFilter, SensorEvaluationContext, SensorResult, SkipReason, sensor

from resources import DestinationsResource

MAX_ACTIVE_RUNS = 2
ACTIVE = [DagsterRunStatus.QUEUED, DagsterRunStatus.NOT_STARTED, DagsterRunStatus.STARTING, DagsterRunStatus.STARTED]


def build_delivery_sensor(delivery_job):
    @sensor(
        job=delivery_job,
        minimum_interval_seconds=30,
        description="Requests a delivery run when instances are due (new, retry time reached, or orphaned by a crash).",
    )
    def delivery_retry_sensor(context: SensorEvaluationContext, destinations: DestinationsResource):
        active = context.instance.get_run_records(RunsFilter(job_name=delivery_job.name, statuses=ACTIVE), limit=MAX_ACTIVE_RUNS)
        if len(active) >= MAX_ACTIVE_RUNS:
            return SkipReason(f"{len(active)} delivery runs queued or running")
        due = destinations.due_counts()
        if not due:
            return SkipReason("nothing due")
        count = int(context.cursor or 0) + 1
        context.log.info(f"delivery run {count}: due " + ", ".join(f"{name} {n}" for name, n in sorted(due.items())))
        request = RunRequest(
            run_key=f"delivery-{count}",
            tags={"axiom/due": str(sum(due.values())), "axiom/destinations": ",".join(sorted(due))[:200]},
        )
        return SensorResult(run_requests=[request], cursor=str(count))

    return delivery_retry_sensor
