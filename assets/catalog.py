"""Catalog maintenance: compaction merges the small per-batch Parquet files of past days."""
from datetime import datetime, timedelta, timezone

from dagster import (
    AssetCheckResult,
    AssetCheckSpec,
    AssetExecutionContext,
    Config,
    MaterializeResult,
    asset,
    define_asset_job,
)

from axiom_dagster.catalog.tables import compact_partition, connect, partitions
from resources import AxiomResource


class CompactionConfig(Config):
    min_files: int = 8
    # Today's partition (and this many days before it) keep receiving batches: leave them.
    skip_recent_days: int = 1


@asset(
    deps=["instance_catalog"],
    group_name="catalog",
    kinds={"parquet"},
    check_specs=[AssetCheckSpec("rows_preserved", asset="catalog_compaction", description="Compaction keeps every row.")],
    description="Merges each past arrival day's batch files into one Parquet file.",
)
def catalog_compaction(context: AssetExecutionContext, config: CompactionConfig, axiom: AxiomResource):
    root = axiom.config.catalog_path
    cutoff = (datetime.now(timezone.utc) - timedelta(days=config.skip_recent_days)).strftime("%Y-%m-%d")
    count = "SELECT count(*) FROM instances_all"
    before = connect(root).execute(count).fetchone()[0]
    merged = {}
    for day in partitions(root, "instances"):
        if day < cutoff:
            done = compact_partition(root, "instances", day, config.min_files)
            if done:
                merged[day] = done
    after = connect(root).execute(count).fetchone()[0]
    context.log.info(f"compacted {len(merged)} partitions ({sum(f for f, _ in merged.values())} files)")
    yield MaterializeResult(
        metadata={
            "partitions_compacted": len(merged),
            "files_merged": sum(f for f, _ in merged.values()),
            "rows": after,
        }
    )
    yield AssetCheckResult(check_name="rows_preserved", passed=before == after, metadata={"before": before, "after": after})


catalog_compaction_job = define_asset_job("catalog_compaction_job", selection=[catalog_compaction])
