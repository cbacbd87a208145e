"""Which catalog file holds which SOP Instance UID, kept in the state store.

Writing a batch must find the older rows of its SOP Instance UIDs (to supersede them), and the
batch's check counts UIDs with more than one row. Without an index both read the UID column of
every instances file, so each batch costs time in proportion to the whole catalog (bench/catalog.py
measures it). With the index they read only the files it names for the batch's UIDs, plus the
files it does not cover: written by something that did not index them (`axiom catalog build`
into another catalog than the configuration's, a crash between writing a file and indexing
it, a catalog older than the index).

The index may name too much (a file since rewritten without some rows, or removed): that costs
a read, never a wrong answer. For a file it covers it must never name too little, so every
writer that adds rows to a file indexes the file's UIDs after writing it (tables.write_batch,
used by the pipeline and `axiom catalog build`; compaction), in one transaction with the
file's coverage. Files that had to be read in full
are then indexed from what is in them, at most UNCOVERED_ROWS_PER_CALL rows per call, so an
existing catalog becomes indexed over a few batches without one batch paying for all of it.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Iterable, Sequence

from sqlalchemy import Engine, select

from axiom_dagster.store.records import utcnow
from axiom_dagster.store.schema import catalog_files, catalog_uids
from axiom_dagster.store.upsert import upsert_insert

UNCOVERED_ROWS_PER_CALL = 50_000
_IN_CHUNK = 500  # UIDs per IN (...) query
_ROWS_PER_INSERT = 1_000  # 2 parameters each: far below SQLite's 32,766 and PostgreSQL's 65,535


@dataclass
class ReadPlan:
    read: list[str]  # files that may hold one of the UIDs: the ones to read
    uncovered: list[str]  # of those, the files the index does not cover
    gone: list[int]  # ids of indexed files no longer in the catalog (compacted, removed)


def catalog_id(root: str) -> str:
    """A short, stable id of a catalog's root (local roots made absolute)."""
    root = str(root).rstrip("/")
    if "://" not in root:
        root = os.path.abspath(root)
    return hashlib.sha256(root.encode()).hexdigest()[:32]


class UidIndex:
    def __init__(self, engine: Engine, root: str):
        self.engine = engine
        self.root = str(root).rstrip("/")
        self.catalog = catalog_id(root)

    def plan(self, files: Sequence[str], uids: Sequence[str]) -> ReadPlan:
        """Of the catalog's current instances `files` (relative paths), those that may hold
        any of `uids`."""
        present = set(files)
        covered: dict[int, str] = {}
        named: set[str] = set()
        with self.engine.connect() as conn:
            query = select(catalog_files.c.id, catalog_files.c.file).where(catalog_files.c.catalog == self.catalog)
            gone = []
            for file_id, file in conn.execute(query):
                if file in present:
                    covered[file_id] = file
                else:
                    gone.append(file_id)
            unique = sorted(set(uids))
            for i in range(0, len(unique), _IN_CHUNK):
                query = select(catalog_uids.c.file_id).distinct().where(catalog_uids.c.sop_uid.in_(unique[i:i + _IN_CHUNK]))
                named.update(covered[f] for (f,) in conn.execute(query) if f in covered)
        known = set(covered.values())
        uncovered = [f for f in files if f not in known]
        return ReadPlan(read=sorted(named | set(uncovered)), uncovered=uncovered, gone=gone)

    def add(self, file: str, uids: Iterable[str]) -> None:
        """Record the UIDs `file` holds (call after writing it) and that it is covered."""
        rows = sorted({u for u in uids if u})
        with self.engine.begin() as conn:
            file_id = conn.execute(select(catalog_files.c.id).where(
                catalog_files.c.catalog == self.catalog, catalog_files.c.file == file)).scalar()
            if file_id is None:
                file_id = conn.execute(catalog_files.insert().values(
                    catalog=self.catalog, file=file, indexed_at=utcnow())).inserted_primary_key[0]
            stmt = upsert_insert(self.engine, catalog_uids).on_conflict_do_nothing()
            values = [{"sop_uid": u, "file_id": file_id} for u in rows]
            if values and self.engine.dialect.name == "sqlite":  # in process: executemany is fastest
                conn.execute(stmt, values)
            elif values:
                # Over the network, multi-row VALUES statements: a list of parameter sets costs a
                # round trip per row on PostgreSQL (0.24-0.29 s per 2,500 UIDs, 76-91 ms this way).
                for i in range(0, len(values), _ROWS_PER_INSERT):
                    conn.execute(stmt.values(values[i:i + _ROWS_PER_INSERT]))

    def forget(self, file_ids: Sequence[int]) -> None:
        """Drop files no longer in the catalog from the index. Always safe: a file that
        comes back is not covered, so it is read in full (and indexed again)."""
        with self.engine.begin() as conn:
            for i in range(0, len(file_ids), _IN_CHUNK):
                chunk = list(file_ids[i:i + _IN_CHUNK])
                conn.execute(catalog_uids.delete().where(catalog_uids.c.file_id.in_(chunk)))
                conn.execute(catalog_files.delete().where(catalog_files.c.id.in_(chunk)))

    def cover(self, files: Sequence[str]) -> list[str]:
        """Index files it does not cover yet from their contents, in order, while they fit
        in UNCOVERED_ROWS_PER_CALL rows (at least one). Returns the files indexed."""
        from axiom_dagster.catalog.views import file_row_counts, uids_in_files

        if not files:
            return []
        counts = file_row_counts(self.root, files)
        chosen, total = [], 0
        for f in files:
            if chosen and total + counts.get(f, 0) > UNCOVERED_ROWS_PER_CALL:
                break
            chosen.append(f)
            total += counts.get(f, 0)
        found = uids_in_files(self.root, chosen)
        for f in chosen:
            self.add(f, found.get(f, ()))
        return chosen
