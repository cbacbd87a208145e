"""Schedules: nightly catalog compaction."""
from dagster import DefaultScheduleStatus, ScheduleDefinition

from assets.catalog import catalog_compaction_job

nightly_catalog_compaction = ScheduleDefinition(
    job=catalog_compaction_job,
    cron_schedule="30 2 * * *",
    execution_timezone="UTC",
    default_status=DefaultScheduleStatus.RUNNING,
    description="Merge yesterday's and older per-batch catalog files.",
)
