"""Catalog assets: the instances, series and studies tables of one arrival day, and
compaction, which merges the small per-batch files of past days.

In a pipeline run (run tag axiom/batch_id) the tables' checks read only the files that batch
wrote (and the catalog's SOP Instance UID column for the batch's UIDs): their cost does not
grow with the day. Once a check failed for a day, later runs of that day check the whole
day again until it passes, so a failed check stays failed until the data is right, whatever
the next batch brings. Materialized outside a pipeline run, the checks cover the whole day.
"""
from datetime import datetime, timedelta, timezone

import polars as pl

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetSpec,
    Config,
    MaterializeResult,
    MetadataValue,
    asset,
    define_asset_job,
    multi_asset,
)

from axiom_dagster.catalog.schema import REQUIRED_COLUMNS
from axiom_dagster.catalog.compaction import compact_partition
from axiom_dagster.catalog.tables import batch_files, connect, duplicated_in_catalog, partitions
from axiom_dagster.catalog.uid_index import UidIndex
from assets.study_pipeline import arrival_partitions
from resources import AxiomResource


CATALOG_TABLES = [
    AssetSpec("catalog_instances", deps=["instance_catalog"], kinds={"parquet", "duckdb"},
              description="One row per SOP Instance UID of the arrival day: typed columns, the header as DICOM JSON, provenance."),
    AssetSpec("catalog_series", deps=["catalog_instances"], kinds={"parquet"},
              description="One row per series with instances of the day: counts, sizes, dates, first/last arrival."),
    AssetSpec("catalog_studies", deps=["catalog_instances"], kinds={"parquet"},
              description="One row per study with instances of the day: modalities, series and instance counts, sizes."),
]
CATALOG_CHECKS = [
    AssetCheckSpec("sop_instance_uid_unique_in_catalog", asset="catalog_instances",
                   description="No SOP Instance UID appears twice in `instances`, across the whole catalog."),
    AssetCheckSpec("required_columns_non_null", asset="catalog_instances",
                   description=f"{', '.join(REQUIRED_COLUMNS)} are never null in the day's rows."),
    AssetCheckSpec("series_counts_consistent", asset="catalog_series",
                   description="Each series' instance count and size equal its instance rows."),
    AssetCheckSpec("study_counts_consistent", asset="catalog_studies",
                   description="Each study's series and instance counts equal its instance rows."),
]


def _preview(con, query: str) -> MetadataValue:
    cursor = con.execute(query)
    rows, columns = cursor.fetchall(), [d[0] for d in cursor.description]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join("" if v is None else str(v) for v in row) + " |" for row in rows]
    return MetadataValue.md("\n".join(lines))


def _one(con, query: str, params=()):
    return con.execute(query, list(params)).fetchall()[0][0]


_FAILING_KEY = "axiom_catalog_checks_failing/"  # + day: the instance's key-value store


def _day_failing(instance, day: str) -> bool:
    return instance.run_storage.get_cursor_values({_FAILING_KEY + day}).get(_FAILING_KEY + day) == "1"


def _remember(instance, day: str, results: list) -> None:
    failing = any(isinstance(r, AssetCheckResult) and not r.passed for r in results)
    if failing or _day_failing(instance, day):
        instance.run_storage.set_cursor_values({_FAILING_KEY + day: "1" if failing else "0"})


@multi_asset(specs=CATALOG_TABLES, check_specs=CATALOG_CHECKS, partitions_def=arrival_partitions, group_name="catalog")
def catalog_tables(context: AssetExecutionContext, axiom: AxiomResource):
    day = context.partition_key
    batch_id = context.run.tags.get("axiom/batch_id")
    if batch_id and not _day_failing(context.instance, day):
        index = UidIndex(axiom.store.engine, axiom.config.catalog_path)
        results = list(batch_tables(axiom.config.catalog_path, day, f"batch-{int(batch_id):08d}", index))
    else:
        results = list(day_tables(axiom.config.catalog_path, day))
    _remember(context.instance, day, results)
    yield from results


def batch_tables(root: str, day: str, name: str, index: UidIndex | None = None):
    """The materializations and checks of one batch's files (see the module docstring)."""
    files = batch_files(root, day, name)
    rows, series, studies = files["instances"], files["series"], files["studies"]
    nulls = {c: rows.filter(pl.col(c).is_null() | (pl.col(c).cast(pl.String) == "")).height for c in REQUIRED_COLUMNS}
    yield MaterializeResult(asset_key="catalog_instances", metadata={
        "batch": name, "rows_in_batch": rows.height, "superseded_in_batch": files["superseded"].height,
        "rows_with_warnings": rows.filter(pl.col("warnings").list.len() > 0).height if rows.height else 0,
        "preview": _frame_preview(rows.select("study_instance_uid", "modality", "study_date", "series_number",
                                              "instance_number", "file_size").head(5)),
    })
    yield MaterializeResult(asset_key="catalog_series", metadata={
        "batch": name, "series_in_batch": series.height,
        "preview": _frame_preview(series.select("series_instance_uid", "modality", "instances", "bytes").head(5)),
    })
    yield MaterializeResult(asset_key="catalog_studies", metadata={
        "batch": name, "studies_in_batch": studies.height,
        "preview": _frame_preview(studies.select("study_instance_uid", "modalities", "instances", "study_date").head(5)),
    })
    dupes = duplicated_in_catalog(root, rows["sop_instance_uid"].drop_nulls().unique().to_list(), index) if rows.height else 0
    yield AssetCheckResult(check_name="sop_instance_uid_unique_in_catalog", asset_key="catalog_instances",
                           passed=dupes == 0, severity=AssetCheckSeverity.ERROR, metadata={"duplicated_uids": dupes})
    yield AssetCheckResult(check_name="required_columns_non_null", asset_key="catalog_instances",
                           passed=not any(nulls.values()), severity=AssetCheckSeverity.ERROR,
                           metadata={f"null_{c}": n for c, n in nulls.items()})
    actual = rows.group_by("series_instance_uid").agg(pl.len().cast(pl.Int64).alias("n"), pl.col("file_size").sum().cast(pl.Int64).alias("b"))
    bad_series = _mismatches(actual, series.select("series_instance_uid", pl.col("instances").alias("n"), pl.col("bytes").alias("b")),
                             "series_instance_uid")
    yield AssetCheckResult(check_name="series_counts_consistent", asset_key="catalog_series",
                           passed=bad_series == 0, severity=AssetCheckSeverity.ERROR, metadata={"inconsistent_series": bad_series})
    actual = rows.group_by("study_instance_uid").agg(pl.len().cast(pl.Int64).alias("n"), pl.col("series_instance_uid").n_unique().cast(pl.Int64).alias("k"))
    bad_studies = _mismatches(actual, studies.select("study_instance_uid", pl.col("instances").alias("n"), pl.col("series_instance_uids").list.len().cast(pl.Int64).alias("k")),
                              "study_instance_uid")
    yield AssetCheckResult(check_name="study_counts_consistent", asset_key="catalog_studies",
                           passed=bad_studies == 0, severity=AssetCheckSeverity.ERROR, metadata={"inconsistent_studies": bad_studies})


def _mismatches(actual: pl.DataFrame, recorded: pl.DataFrame, key: str) -> int:
    """Keys whose recorded counts differ from the instance rows', or that only one side has."""
    joined = actual.join(recorded, on=key, how="full", coalesce=True, suffix="_recorded", nulls_equal=True)
    columns = [c for c in actual.columns if c != key]
    differs = pl.any_horizontal(pl.col(c).ne_missing(pl.col(f"{c}_recorded")) for c in columns)
    return joined.filter(differs).height


def _frame_preview(frame: pl.DataFrame) -> MetadataValue:
    lines = ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join("" if v is None else str(v) for v in row) + " |" for row in frame.iter_rows()]
    return MetadataValue.md("\n".join(lines))


def day_tables(root: str, day: str):
    """The materializations and checks of the whole arrival day."""
    con = connect(root)
    in_day = "study_instance_uid IN (SELECT study_instance_uid FROM instances WHERE arrival_date = ?::DATE)"
    # The day's counts and the required columns' NULLs in one query: each query reads the
    # day's files again, and this asset runs after every batch.
    nulls = ", ".join(f"count(*) FILTER ({c} IS NULL OR {c} = '')" for c in REQUIRED_COLUMNS)
    instances, with_warnings, *null_counts = con.execute(
        f"SELECT count(*), count(*) FILTER (len(warnings) > 0), {nulls} FROM instances WHERE arrival_date = ?::DATE",
        [day]).fetchone()
    yield MaterializeResult(asset_key="catalog_instances", metadata={
        "rows_in_day": instances,
        "rows_in_catalog": _one(con, "SELECT count(*) FROM instances"),
        "superseded_in_day": _one(con, "SELECT count(*) FROM superseded WHERE arrival_date = ?::DATE", [day]),
        "rows_with_warnings": with_warnings,
        "preview": _preview(con, f"SELECT study_instance_uid, modality, study_date, series_number, instance_number, "
                                 f"file_size FROM instances WHERE arrival_date = '{day}' LIMIT 5"),
    })
    yield MaterializeResult(asset_key="catalog_series", metadata={
        "series_in_day": _one(con, f"SELECT count(*) FROM series WHERE {in_day}", [day]),
        "preview": _preview(con, f"SELECT series_instance_uid, modality, instances, bytes FROM series "
                                 f"WHERE first_arrival_date <= '{day}' AND last_arrival_date >= '{day}' LIMIT 5"),
    })
    yield MaterializeResult(asset_key="catalog_studies", metadata={
        "studies_in_day": _one(con, f"SELECT count(*) FROM studies WHERE {in_day}", [day]),
        "preview": _preview(con, f"SELECT study_instance_uid, modalities, series, instances, study_date FROM studies "
                                 f"WHERE first_arrival_date <= '{day}' AND last_arrival_date >= '{day}' LIMIT 5"),
    })
    yield from catalog_checks(con, day, dict(zip(REQUIRED_COLUMNS, null_counts)))


def catalog_checks(con, day: str, nulls: dict[str, int]):
    """The day's checks; `nulls`: required column -> rows of the day where it is NULL or empty."""
    dupes = _one(con, "SELECT count(*) FROM (SELECT sop_instance_uid FROM instances GROUP BY 1 HAVING count(*) > 1)")
    yield AssetCheckResult(check_name="sop_instance_uid_unique_in_catalog", asset_key="catalog_instances",
                           passed=dupes == 0, severity=AssetCheckSeverity.ERROR, metadata={"duplicated_uids": dupes})
    yield AssetCheckResult(check_name="required_columns_non_null", asset_key="catalog_instances",
                           passed=not any(nulls.values()), severity=AssetCheckSeverity.ERROR,
                           metadata={f"null_{c}": n for c, n in nulls.items()})
    day_series = "SELECT DISTINCT series_instance_uid FROM instances WHERE arrival_date = ?::DATE"
    bad_series = _one(con, f"""
        WITH actual AS (SELECT series_instance_uid, count(*) AS n, sum(file_size) AS b FROM instances
                        WHERE series_instance_uid IN ({day_series}) GROUP BY 1)
        SELECT count(*) FROM actual FULL JOIN (SELECT * FROM series WHERE series_instance_uid IN ({day_series})) s
        USING (series_instance_uid) WHERE s.instances IS DISTINCT FROM actual.n OR s.bytes IS DISTINCT FROM actual.b""", [day, day])
    yield AssetCheckResult(check_name="series_counts_consistent", asset_key="catalog_series",
                           passed=bad_series == 0, severity=AssetCheckSeverity.ERROR, metadata={"inconsistent_series": bad_series})
    day_studies = "SELECT DISTINCT study_instance_uid FROM instances WHERE arrival_date = ?::DATE"
    bad_studies = _one(con, f"""
        WITH actual AS (SELECT study_instance_uid, count(*) AS n, count(DISTINCT series_instance_uid) AS k FROM instances
                        WHERE study_instance_uid IN ({day_studies}) GROUP BY 1)
        SELECT count(*) FROM actual FULL JOIN (SELECT * FROM studies WHERE study_instance_uid IN ({day_studies})) s
        USING (study_instance_uid) WHERE s.instances IS DISTINCT FROM actual.n OR s.series IS DISTINCT FROM actual.k""", [day, day])
    yield AssetCheckResult(check_name="study_counts_consistent", asset_key="catalog_studies",
                           passed=bad_studies == 0, severity=AssetCheckSeverity.ERROR, metadata={"inconsistent_studies": bad_studies})


class CompactionConfig(Config):
    min_files: int = 8
    # Today's partition (and this many days before it) keep receiving batches: leave them.
    skip_recent_days: int = 1


@asset(
    deps=["catalog_instances"],
    group_name="catalog",
    kinds={"parquet"},
    check_specs=[AssetCheckSpec("rows_preserved", asset="catalog_compaction",
                                description="Compaction keeps every row (instances and superseded).")],
    description="Merges each past arrival day's batch files into one Parquet file per table (superseded "
                "included) and moves a superseded duplicate out of instances; each day swapped in atomically.",
)
def catalog_compaction(context: AssetExecutionContext, config: CompactionConfig, axiom: AxiomResource):
    root = axiom.config.catalog_path
    cutoff = (datetime.now(timezone.utc) - timedelta(days=config.skip_recent_days)).strftime("%Y-%m-%d")
    # instances_all: a duplicate moved from instances to superseded is still the same row.
    rows = "SELECT sop_instance_uid, ledger_id, file_path FROM instances_all ORDER BY ALL"
    before = connect(root).execute(rows).fetchall()
    merged = {}
    for day in sorted(set(partitions(root, "instances")) | set(partitions(root, "superseded"))):
        if day < cutoff:
            done = compact_partition(root, day, config.min_files, UidIndex(axiom.store.engine, root))
            if done:
                merged[day] = done
    after = connect(root).execute(rows).fetchall()
    context.log.info(f"compacted {len(merged)} partitions ({sum(f for f, _ in merged.values())} files)")
    yield MaterializeResult(
        metadata={
            "partitions_compacted": len(merged),
            "files_merged": sum(f for f, _ in merged.values()),
            "rows": len(after),
        }
    )
    yield AssetCheckResult(check_name="rows_preserved", passed=before == after, metadata={"before": len(before), "after": len(after)})


catalog_compaction_job = define_asset_job("catalog_compaction_job", selection=[catalog_compaction])
