"""Archive backfill assets: one per configured source, partitioned by StudyDate day.

A run covers several days (BackfillPolicy.multi_run), retrieves on the source's concurrency
pool (and inside the run at most `backfill.concurrency` studies at once, across its days), and records per-day metadata (found, fetched, skipped, failed, instances, bytes,
seconds) as one materialization per day partition, so the UI's partition status shows which
days are done. A day whose query failed is not materialized (it stays missing) and the run
fails after the other days, so a re-run picks it up. Retrieved studies land in the ledger;
the landing sensor hands them to the study pipeline.
"""

from datetime import date, datetime

from dagster import (
    AssetExecutionContext,
    AssetMaterialization,
    BackfillPolicy,
    DailyPartitionsDefinition,
    Definitions,
    asset,
)

from axiom_dagster.config.models import AxiomConfig
from axiom_dagster.ingest.landing import LandingZone
from axiom_dagster.sources.backfill import backfill_days, days_between
from axiom_dagster.sources.workers import ProcessRetrieval, wants_processes
from resources import AxiomResource, SourceResource, source_resource_key
from sensors.source_poll import build_poll_sensor, build_retrieval_job, pollable, source_pool


def backfill_asset_name(name: str) -> str:
    return f"{source_resource_key(name).removeprefix('source_')}_archive"


def build_backfill_asset(spec):
    key = source_resource_key(spec.name)
    settings = spec.backfill

    @asset(
        name=backfill_asset_name(spec.name),
        partitions_def=DailyPartitionsDefinition(start_date=settings.start_date.isoformat(), end_offset=1),
        backfill_policy=BackfillPolicy.multi_run(max_partitions_per_run=settings.days_per_run),
        pool=source_pool(spec.name),
        required_resource_keys={key, "axiom"},
        group_name="sources",
        kinds={spec.type},
        output_required=False,
        description=f"Studies of {spec.name} by StudyDate day, retrieved into the landing zone (resumable).",
    )
    def archive(context: AssetExecutionContext):
        axiom: AxiomResource = context.resources.axiom
        cfg, store = axiom.config, axiom.store
        window = context.partition_time_window
        days = [d for d in days_between(window.start.date(), window.end.date()) if d < window.end.date()]
        source = getattr(context.resources, key).open()
        processes = ProcessRetrieval(cfg, spec.name, settings.concurrency) if wants_processes(spec) else None
        failed_days = []
        try:
            zone = LandingZone.for_config(cfg, store)
            for result in backfill_days(source, zone, days, settings, run_id=context.run.run_id, processes=processes):
                context.log.info(f"{spec.name} {result.day}: {result.metadata()}")
                if result.error and not (result.fetched or result.skipped):
                    failed_days.append(result.day)
                    continue
                yield AssetMaterialization(asset_key=context.asset_key, partition=result.day, metadata=result.metadata())
        finally:
            if processes is not None:
                processes.close()
            source.close()
        if failed_days:
            raise RuntimeError(f"{spec.name}: {len(failed_days)} days failed ({', '.join(failed_days[:5])}); re-run them")

    return archive


def source_definitions(config: AxiomConfig, config_path: str = "", *, with_axiom: bool = False) -> Definitions:
    """Backfill assets, poll sensors, retrieval jobs and one resource per configured source
    (plus the AxiomResource when `with_axiom`: standalone use, e.g. tests and the CLI)."""
    assets, jobs, sensors = [], [], []
    resources = {"axiom": AxiomResource(config_path=config_path)} if with_axiom else {}
    for spec in config.sources:
        resources[source_resource_key(spec.name)] = SourceResource(source_name=spec.name, config_path=config_path)
        assets.append(build_backfill_asset(spec))
        if pollable(spec):
            retrieval = build_retrieval_job(spec)
            jobs.append(retrieval)
            sensors.append(build_poll_sensor(spec, retrieval))
    return Definitions(assets=assets, jobs=jobs, sensors=sensors, resources=resources)


def partition_keys(first: date, last: date) -> list[str]:
    return [d.isoformat() for d in days_between(first, last)]


def today() -> date:
    return datetime.now().date()
