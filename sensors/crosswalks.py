"""Schedules: each sourced crosswalk on its own cron (from the YAML), and the hourly export of
the missing-keys report and the AI answer cache."""
from dagster import DefaultScheduleStatus, ScheduleDefinition

from assets.crosswalks import lookup_reports_job, sourced_crosswalks


def crosswalk_schedules(config, jobs: dict) -> list[ScheduleDefinition]:
    return [
        ScheduleDefinition(
            name=f"crosswalk_{name}_schedule", job=jobs[name], cron_schedule=spec.cron,
            execution_timezone=spec.timezone, default_status=DefaultScheduleStatus.RUNNING,
            description=f"Refresh crosswalk {name} ({spec.cron}, {spec.timezone}).",
        )
        for name, spec in sourced_crosswalks(config).items() if spec.cron
    ]


hourly_lookup_reports = ScheduleDefinition(
    job=lookup_reports_job,
    cron_schedule="15 * * * *",
    execution_timezone="UTC",
    default_status=DefaultScheduleStatus.RUNNING,
    description="Export the missing-keys report and the AI answer cache.",
)
