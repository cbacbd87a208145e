"""Crosswalk snapshot assets (one per sourced crosswalk), their refresh jobs and schedules, and
the missing-keys report.

A materialization snapshots the source to Parquet and runs the checks; only a snapshot that
passes all three is promoted (the rule engine keeps reading the previous one otherwise), and
a failed check shows on the asset in the UI. The study pipeline's morph step depends on these
assets in lineage.
"""

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    MaterializeResult,
    MetadataValue,
    asset,
    define_asset_job,
)

from axiom_dagster.crosswalks.lookup import refresh_crosswalk, snapshot_root
from axiom_dagster.crosswalks.misses import open_misses
from resources import AxiomResource

CHECKS = {
    "keys_unique": "No key appears twice in the new snapshot.",
    "keys_not_null": "No key column is null or empty in the new snapshot.",
    "row_count_drift": "Row count within max_row_drift of the promoted snapshot; otherwise not promoted.",
}


def crosswalk_key(name: str) -> AssetKey:
    return AssetKey(["crosswalks", name])


def sourced_crosswalks(config) -> dict:
    return {n: s for n, s in config.crosswalks.items() if s.snapshotted}


def crosswalk_asset(name: str, spec):
    key = crosswalk_key(name)

    @asset(
        key=key,
        group_name="crosswalks",
        kinds={"parquet", spec.source.type},
        check_specs=[AssetCheckSpec(c, asset=key, description=d) for c, d in CHECKS.items()],
        description=f"Snapshot of crosswalk {name!r} ({spec.source.type} source), promoted when its checks pass.",
    )
    def _crosswalk(context: AssetExecutionContext, axiom: AxiomResource):
        result = refresh_crosswalk(axiom.config, name)
        context.log.info(f"crosswalk {name}: {result.rows} rows, promoted={result.promoted}"
                         + (f", failed checks: {result.failed_checks}" if result.failed_checks else ""))
        yield MaterializeResult(metadata={
            "rows": result.rows, "previous_rows": result.previous_rows, "promoted": result.promoted,
            "snapshot": MetadataValue.path(result.file), "failed_checks": ", ".join(result.failed_checks),
        })
        for check in result.checks:
            yield AssetCheckResult(check_name=check.name, passed=check.passed,
                                   severity=AssetCheckSeverity.ERROR, metadata=check.detail)

    return _crosswalk


def crosswalk_definitions(config) -> tuple[list, dict]:
    """(assets, {crosswalk name: refresh job}) for the configured sourced crosswalks."""
    assets, jobs = [], {}
    for name, spec in sourced_crosswalks(config).items():
        a = crosswalk_asset(name, spec)
        assets.append(a)
        jobs[name] = define_asset_job(f"refresh_crosswalk_{name}", selection=[a],
                                      description=f"Refresh the {name} crosswalk snapshot.")
    return assets, jobs


def write_table(rows: list[dict], columns: list[str], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.table({c: pa.array([r.get(c) for r in rows]) for c in columns}) if rows else pa.table(
        {c: pa.array([], type=pa.string()) for c in columns})
    tmp = path.with_suffix(".tmp")
    pq.write_table(table, tmp)
    tmp.replace(path)


MISS_COLUMNS = ["kind", "name", "key_text", "reason", "count", "first_seen", "last_seen", "last_run_id"]


@asset(
    key=AssetKey(["crosswalks", "missing_keys_report"]),
    deps=["morphed_instances"],
    group_name="crosswalks",
    kinds={"parquet"},
    description="Keys the crosswalks lacked and values AI standardization left as they were "
    "(from lookup_misses), for an operator to add to the source or review.",
)
def missing_keys_report(context: AssetExecutionContext, axiom: AxiomResource):
    rows = open_misses(axiom.store.engine)
    path = snapshot_root(axiom.config) / "_reports" / "missing_keys.parquet"
    write_table(rows, MISS_COLUMNS, path)
    by_name: dict[str, int] = {}
    for r in rows:
        by_name[f"{r['kind']}:{r['name']}"] = by_name.get(f"{r['kind']}:{r['name']}", 0) + 1
    context.log.info(f"missing-keys report: {len(rows)} keys")
    return MaterializeResult(metadata={"keys": len(rows), "file": MetadataValue.path(str(path)),
                                       **{f"keys_{k}": v for k, v in sorted(by_name.items())}})


lookup_reports_job = define_asset_job(
    "lookup_reports_job",
    selection=[AssetKey(["crosswalks", "missing_keys_report"]), AssetKey(["ai", "standardization_cache"])],
    description="Export the missing-keys report and the AI answer cache.",
)
