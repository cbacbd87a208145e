"""The catalog's tables, written once per batch: instances, series, studies, superseded.

Layout: <root>/<table>/arrival_date=YYYY-MM-DD/<batch name>.parquet, the same name in
each table. Duplicates are resolved when a batch is written, not when it is read: a SOP
Instance UID already in the catalog keeps the row of its latest arrival (highest ledger
id; the newer batch when there is none); the other row moves to `superseded` with the
name of the batch that superseded it, and the file it was in is rewritten without it
(with its series and studies files). So `instances` is a plain scan, and nothing is lost.
A re-run of a batch writes the same files again: idempotent.

Concurrent runs write different files; two runs superseding rows in the same older file
at the same moment is the one case that is not safe (the pipeline's batches never share
a study, so it does not happen there).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence

import polars as pl

from axiom_dagster.catalog.columns import SORT_KEYS, instance_columns, instance_table  # noqa: F401 - imported from here too
from axiom_dagster.catalog.schema import INSTANCE_SCHEMA, REQUIRED_COLUMNS, SCHEMA_VERSION, TABLES  # noqa: F401
from axiom_dagster.catalog.storage import CatalogStorage

if TYPE_CHECKING:
    from axiom_dagster.catalog.uid_index import UidIndex

PARTITION = "arrival_date"
# A zero-row file per table carries the current schema: views work on an empty catalog and
# read columns added later as NULL in older files.
SCHEMA_PARTITION = "0001-01-01"
SCHEMA_FILE = f"schema-v{SCHEMA_VERSION}.parquet"


def series_table(instances: pl.DataFrame) -> pl.DataFrame:
    out = instances.group_by("series_instance_uid", maintain_order=True).agg(
        pl.col("study_instance_uid").first(),
        pl.col("patient_id").drop_nulls().first(),
        pl.col("modality").drop_nulls().first(),
        pl.col("series_number").drop_nulls().first(),
        pl.col("series_description").drop_nulls().first(),
        pl.col("body_part_examined").drop_nulls().first(),
        pl.col("institution_name").drop_nulls().first(),
        pl.len().cast(pl.Int64).alias("instances"),
        pl.col("file_size").sum().cast(pl.Int64).alias("bytes"),
        pl.col("content_date").min().alias("first_content_date"),
        pl.col("content_date").max().alias("last_content_date"),
        pl.col("received_at").min().alias("first_received_at"),
        pl.col("received_at").max().alias("last_received_at"),
    )
    return out.with_columns(pl.lit(SCHEMA_VERSION, pl.Int16).alias("schema_version")).select(list(TABLES["series"]))


def study_table(instances: pl.DataFrame) -> pl.DataFrame:
    out = instances.group_by("study_instance_uid", maintain_order=True).agg(
        pl.col("patient_id").drop_nulls().first(),
        pl.col("patient_name").drop_nulls().first(),
        pl.col("accession_number").drop_nulls().first(),
        pl.col("study_date").min(),
        pl.col("study_description").drop_nulls().first(),
        pl.col("institution_name").drop_nulls().first(),
        pl.col("modality").drop_nulls().unique().sort().alias("modalities"),
        pl.col("series_instance_uid").unique().sort().alias("series_instance_uids"),
        pl.len().cast(pl.Int64).alias("instances"),
        pl.col("file_size").sum().cast(pl.Int64).alias("bytes"),
        pl.col("received_at").min().alias("first_received_at"),
        pl.col("received_at").max().alias("last_received_at"),
    )
    return out.with_columns(pl.lit(SCHEMA_VERSION, pl.Int16).alias("schema_version")).select(list(TABLES["studies"]))


def _rel(table: str, partition: str, name: str) -> str:
    return f"{table}/{PARTITION}={partition}/{name}.parquet"


def ensure_schema_files(storage: CatalogStorage) -> None:
    """The zero-row schema files of this version, and (local catalogs) catalog.duckdb."""
    from axiom_dagster.catalog.views import DUCKDB_FILE, write_duckdb_file

    created = False
    for table, schema in TABLES.items():
        rel = f"{table}/{PARTITION}={SCHEMA_PARTITION}/{SCHEMA_FILE}"
        if not storage.exists(rel):
            storage.write_parquet(rel, pl.DataFrame(schema=schema))
            created = True
    if not storage.remote and (created or not storage.exists(DUCKDB_FILE)):
        write_duckdb_file(storage.root)


def _write_instances_file(storage: CatalogStorage, partition: str, name: str, frame: pl.DataFrame) -> None:
    """An instances file and the series and studies files aggregated from it (or none if empty)."""
    if frame.height == 0:
        for table in ("instances", "series", "studies"):
            if storage.exists(_rel(table, partition, name)):
                storage.remove(_rel(table, partition, name))
        return
    # Rollups first: a reader that sees the instances file also sees its series and studies.
    storage.write_parquet(_rel("series", partition, name), series_table(frame))
    storage.write_parquet(_rel("studies", partition, name), study_table(frame))
    storage.write_parquet(_rel("instances", partition, name), frame)


@dataclass
class BatchWrite:
    """What writing one batch did."""

    file: str
    rows: int
    superseded: list[str] = field(default_factory=list)  # SOP Instance UIDs whose older row moved
    rewritten: list[str] = field(default_factory=list)  # older files rewritten without those rows


def _arrival_order(frame: pl.DataFrame) -> pl.DataFrame:
    # Latest arrival last: ledger id when known, then the order the rows were written in.
    return frame.with_row_index("_order").sort(["ledger_id", "_order"], nulls_last=False)


def write_batch(root: str, partition: str, name: str, rows: Sequence[dict] | pl.DataFrame,
                index: UidIndex | None = None) -> BatchWrite:
    """Write one batch's instances (and its series and studies); supersede older rows. With
    `index`, only the files it names for the batch's UIDs (and those it does not cover) are
    read, and the new file is indexed (catalog/uid_index.py); without, every file is read."""
    from axiom_dagster.catalog.views import existing_rows

    storage = CatalogStorage(root)
    ensure_schema_files(storage)
    frame = rows if isinstance(rows, pl.DataFrame) else instance_table(rows)
    own = _rel("instances", partition, name)
    uids = frame["sop_instance_uid"].drop_nulls().unique().to_list()
    files = data_files(storage, "instances", exclude=own)
    plan = index.plan(files, uids) if index is not None and files else None
    if files:
        older = existing_rows(root, uids, exclude=own, files=plan.read if plan else None)
    else:  # the first batch of a catalog: nothing to supersede, no scan
        older = pl.DataFrame(schema={**INSTANCE_SCHEMA, "_file": pl.String})
    # Every candidate row per SOP Instance UID: this batch's and older files'; latest wins.
    candidates = pl.concat(
        [older.select(list(INSTANCE_SCHEMA) + ["_file"]), frame.with_columns(pl.lit(own).alias("_file"))],
        how="vertical_relaxed",
    )
    ordered = _arrival_order(candidates)
    last = ordered.group_by("sop_instance_uid").agg(pl.col("_order").last())["_order"]
    winners = ordered.filter(pl.col("_order").is_in(last.implode()) | pl.col("sop_instance_uid").is_null())
    losers = ordered.filter(~pl.col("_order").is_in(winners["_order"].implode())).drop("_order")
    mine = winners.filter(pl.col("_file") == own).drop("_order", "_file").sort(SORT_KEYS, nulls_last=True)

    result = BatchWrite(file=storage.url(own), rows=mine.height)
    if losers.height:
        sup_rel = _rel("superseded", partition, name)
        moved = losers.drop("_file").with_columns(pl.lit(name).alias("superseded_by"))
        if storage.exists(sup_rel):  # a re-run keeps what the first run moved here
            moved = pl.concat([storage.read_parquet([sup_rel]), moved], how="diagonal_relaxed").unique(keep="first", maintain_order=True)
        storage.write_parquet(sup_rel, moved)
        result.superseded = sorted(set(losers["sop_instance_uid"].to_list()))
    _write_instances_file(storage, partition, name, mine)
    for rel in sorted(set(losers["_file"].to_list()) - {own}):
        gone = losers.filter(pl.col("_file") == rel)
        kept = _without(storage.read_parquet([rel]), gone)
        _, part, file_name = rel.split("/")
        _write_instances_file(storage, part.split("=", 1)[1], file_name[: -len(".parquet")], kept)
        result.rewritten.append(rel)
    if index is not None:
        index.add(own, mine["sop_instance_uid"].drop_nulls().to_list())
        if plan and plan.gone:
            index.forget(plan.gone)
        if plan and plan.uncovered:  # read in full anyway: index what they hold (bounded)
            index.cover(plan.uncovered)
    return result


def _without(frame: pl.DataFrame, gone: pl.DataFrame) -> pl.DataFrame:
    keys = ["sop_instance_uid", "ledger_id", "file_path"]
    frame = frame.with_columns(pl.lit(None, INSTANCE_SCHEMA[c]).alias(c) for c in INSTANCE_SCHEMA if c not in frame.columns)
    return frame.join(gone.select(keys), on=keys, how="anti", nulls_equal=True).select(list(INSTANCE_SCHEMA))


def data_files(storage: CatalogStorage, table: str, exclude: str | None = None) -> list[str]:
    """A table's files that can hold rows (not the zero-row schema files), relative paths."""
    schema_folder = f"{table}/{PARTITION}={SCHEMA_PARTITION}/"
    return [rel for rel in storage.list(table) if not rel.startswith(schema_folder) and rel != exclude]


def batch_files(root: str, partition: str, name: str) -> dict[str, pl.DataFrame]:
    """The rows one batch wrote, per table (instances, series, studies, superseded); a table
    the batch wrote nothing to gives an empty frame."""
    storage = CatalogStorage(root)
    out = {}
    for table, schema in TABLES.items():
        rel = _rel(table, partition, name)
        out[table] = storage.read_parquet([rel]) if storage.exists(rel) else pl.DataFrame(schema=schema)
    return out


def duplicated_in_catalog(root: str, sop_uids: list[str], index: UidIndex | None = None) -> int:
    """How many of these SOP Instance UIDs have more than one row in `instances` (one column
    of each instances file read, filtered to these UIDs; with `index`, of the files it names
    for them and those it does not cover)."""
    from axiom_dagster.catalog.views import count_duplicates

    if not sop_uids:
        return 0
    files = index.plan(data_files(CatalogStorage(root), "instances"), sop_uids).read if index is not None else None
    return count_duplicates(root, sop_uids, files)


def partitions(root: str, table_name: str) -> list[str]:
    """Arrival dates that have files in a table, oldest first."""
    found = {rel.split("/")[1].split("=", 1)[1] for rel in CatalogStorage(root).list(table_name)}
    return sorted(found - {SCHEMA_PARTITION})


from axiom_dagster.catalog.views import connect  # noqa: E402,F401 - callers import it from here too
