"""Event-log retention: delete Dagster runs (and their event logs) that ended long ago.

Dagster keeps every event of every run; at 100,000 studies per hour that is tens of
thousands of runs a day. Per-study state, deliveries and the audit log live in the state
store and are not touched; only Dagster's own run and event history older than
`retention_days` is deleted, at most `max_runs` per run of the job.
"""
from datetime import datetime, timedelta, timezone

from dagster import (
    Config,
    DagsterRunStatus,
    DefaultScheduleStatus,
    OpExecutionContext,
    RunsFilter,
    ScheduleDefinition,
    job,
    op,
)

FINISHED = [DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED]


class RetentionConfig(Config):
    retention_days: float = 30.0
    max_runs: int = 5000


@op(description="Delete finished runs, with their event logs, older than retention_days.")
def delete_old_runs(context: OpExecutionContext, config: RetentionConfig) -> int:
    before = datetime.now(timezone.utc) - timedelta(days=config.retention_days)
    instance = context.instance
    records = instance.get_run_records(
        filters=RunsFilter(statuses=FINISHED, updated_before=before), limit=config.max_runs, ascending=True,
    )
    deleted = 0
    for record in records:
        if record.dagster_run.run_id != context.run_id:
            instance.delete_run(record.dagster_run.run_id)
            deleted += 1
    context.log.info(f"deleted {deleted} runs that finished before {before:%Y-%m-%d %H:%M} UTC")
    return deleted


@job(description="Prune Dagster run and event-log history (state store and catalog untouched).")
def dagster_retention_job():
    delete_old_runs()


dagster_event_log_retention = ScheduleDefinition(
    job=dagster_retention_job,
    cron_schedule="30 3 * * *",
    execution_timezone="UTC",
    default_status=DefaultScheduleStatus.RUNNING,
    description="Daily: delete runs and event logs older than 30 days.",
)
