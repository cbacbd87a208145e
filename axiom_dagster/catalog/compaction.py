"""Compaction of one arrival day: its per-batch files merged into one file per table
(instances, series, studies, superseded), and any instance row that a later arrival of the
same SOP Instance UID supersedes (a race of two writers can leave one) moved to
`superseded`. The multiset of rows of `instances_all` is kept.

Readers never see a half-compacted day on a local catalog: the merged files are written
into a staging folder outside the tables, and each table's day folder is swapped with it in
one atomic rename (Linux renameat2 RENAME_EXCHANGE; superseded first, instances last, so the
`instances` view never shows a row twice or misses one). Where that is not available (other
systems, gs://, s3://) the merged files are written before the originals are removed: a
reader may see a row twice for that moment, never miss one. A query that already listed the
old files while they are swapped out fails and can be re-run. Days still receiving batches
are not compacted (the asset skips recent days).
"""
from __future__ import annotations

import ctypes
import os
import shutil

import polars as pl

from axiom_dagster.catalog.schema import INSTANCE_SCHEMA, TABLES
from axiom_dagster.catalog.storage import CatalogStorage
from axiom_dagster.catalog.tables import PARTITION, SORT_KEYS, data_files, series_table, study_table
from axiom_dagster.catalog.uid_index import UidIndex
from axiom_dagster.catalog.views import existing_rows

STAGING = ".compaction"  # under the catalog root, outside every table's glob


def compact_partition(root: str, arrival_date: str, min_files: int, index: UidIndex | None = None) -> tuple[int, int] | None:
    """Compact one day when it has at least `min_files` (and 2) files in `instances` or
    `superseded`. Returns (files merged, instance rows kept) or None. With `index` (the
    SOP Instance UID index) the other days' rows are looked up in the files it names, and
    the merged file is indexed."""
    storage = CatalogStorage(root)
    folder = f"{PARTITION}={arrival_date}"
    files = storage.list(f"instances/{folder}")
    moved_before = storage.list(f"superseded/{folder}")
    if max(len(files), len(moved_before)) < max(min_files, 2):
        return None
    rows = pl.concat([_normalized(storage.read_parquet([f]), INSTANCE_SCHEMA).with_columns(pl.lit(f).alias("_file"))
                      for f in files], how="vertical") if files else pl.DataFrame(schema={**INSTANCE_SCHEMA, "_file": pl.String})
    name = _name(files or moved_before)
    kept, losers = _drop_superseded(root, rows, files, name, index)
    moved = _normalized(storage.read_parquet(moved_before), TABLES["superseded"]) if moved_before else None
    moved = pl.concat([m for m in (moved, losers) if m is not None and m.height], how="vertical") if (
        (moved is not None and moved.height) or losers.height) else None
    new = {
        "superseded": moved,
        "series": series_table(kept) if kept.height else None,
        "studies": study_table(kept) if kept.height else None,
        "instances": kept if kept.height else None,
    }
    old = {table: storage.list(f"{table}/{folder}") for table in new}
    if not storage.remote and _swap_supported(storage.root):
        _swap_in(storage, folder, name, new)
    else:
        _write_then_remove(storage, folder, name, new, old)
    if index is not None and kept.height:
        index.add(_rel("instances", folder, name), kept["sop_instance_uid"].drop_nulls().to_list())
    return len(files) + len(moved_before), kept.height


def _name(files: list[str]) -> str:
    first, last = (f.rsplit("/", 1)[1][: -len(".parquet")].removeprefix("compacted-") for f in (files[0], files[-1]))
    return f"compacted-{first}-{last}" if first != last else f"compacted-{first}"


def _normalized(frame: pl.DataFrame, schema: pl.Schema) -> pl.DataFrame:
    """Old files lack newer columns: NULL, in the current schema's order and types."""
    frame = frame.with_columns(pl.lit(None, schema[c]).alias(c) for c in schema if c not in frame.columns)
    return frame.select([pl.col(c).cast(t) for c, t in schema.items()])


def _drop_superseded(root: str, rows: pl.DataFrame, files: list[str], name: str,
                     index: UidIndex | None = None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(rows kept, rows moved to superseded): per SOP Instance UID the latest arrival wins,
    among this day's rows and the other days' rows of the same UIDs."""
    if rows.height == 0:
        return rows.drop("_file"), pl.DataFrame(schema=TABLES["superseded"])
    uids = rows["sop_instance_uid"].drop_nulls().unique().to_list()
    candidates = index.plan(data_files(CatalogStorage(root), "instances"), uids).read if index is not None else None
    others = existing_rows(root, uids, exclude="", files=candidates)
    others = others.filter(~pl.col("_file").is_in(files))
    candidates = pl.concat([others.select(rows.columns), rows], how="vertical").with_row_index("_order")
    # Latest arrival last: ledger id when known, then arrival time, then the order written.
    ordered = candidates.sort(["ledger_id", "received_at", "_file", "_order"], nulls_last=False)
    last = ordered.group_by("sop_instance_uid").agg(pl.col("_order").last())["_order"]
    mine = ordered.filter(pl.col("_file").is_in(files))
    win = pl.col("_order").is_in(last.implode()) | pl.col("sop_instance_uid").is_null()
    kept = mine.filter(win).drop("_order", "_file").sort(SORT_KEYS, nulls_last=True)
    losers = mine.filter(~win).drop("_order", "_file").with_columns(pl.lit(name).alias("superseded_by"))
    return kept, losers


def _rel(table: str, folder: str, name: str) -> str:
    return f"{table}/{folder}/{name}.parquet"


def _write_then_remove(storage: CatalogStorage, folder: str, name: str, new: dict, old: dict) -> None:
    for table, frame in new.items():  # superseded first, instances last
        target = _rel(table, folder, name)
        if frame is not None:
            storage.write_parquet(target, frame)
        for rel in old[table]:
            if rel != target or frame is None:
                storage.remove(rel)


def _swap_in(storage: CatalogStorage, folder: str, name: str, new: dict) -> None:
    staging = os.path.join(storage.root, STAGING, str(os.getpid()))  # one per compacting process
    shutil.rmtree(staging, ignore_errors=True)  # left by an interrupted compaction
    for table, frame in new.items():  # superseded first, instances last
        live = os.path.join(storage.root, table, folder)
        ready = os.path.join(staging, table, folder)
        os.makedirs(ready)
        if frame is not None:
            storage.write_parquet(os.path.relpath(os.path.join(ready, f"{name}.parquet"), storage.root), frame)
        if os.path.isdir(live):
            _exchange(ready, live)  # `ready` now holds the old files
        else:
            os.makedirs(os.path.dirname(live), exist_ok=True)
            os.rename(ready, live)
    shutil.rmtree(staging, ignore_errors=True)
    _remove_if_empty(os.path.join(storage.root, STAGING))


def _remove_if_empty(folder: str) -> None:
    try:
        os.rmdir(folder)
    except OSError:
        pass  # another compaction's staging is there, or it is gone already


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _renameat2():
    try:
        function = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    return function


_RENAMEAT2 = _renameat2()


def _rename_exchange(a: str, b: str) -> None:
    if _RENAMEAT2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) != 0:
        error = ctypes.get_errno()
        raise OSError(error, os.strerror(error), b)


def _exchange(live_ready: str, live: str) -> None:
    """Swap a staged day folder with the live one (both then exist; the staged one holds the old files)."""
    _rename_exchange(live_ready, live)


def _swap_supported(root: str) -> bool:
    """Whether folders can be exchanged atomically on the catalog's file system (tried on
    two empty folders in the staging area)."""
    staging = os.path.join(root, STAGING, f"probe-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    a, b = os.path.join(staging, "probe-a"), os.path.join(staging, "probe-b")
    os.makedirs(a), os.makedirs(b)
    try:
        if _RENAMEAT2 is None:
            return False
        _rename_exchange(a, b)
        return True
    except OSError:
        return False
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        _remove_if_empty(os.path.join(root, STAGING))
