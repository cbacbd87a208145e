"""Crosswalk snapshots: a refresh writes a candidate Parquet file, checks it, and promotes it
only when every check passes. The rule engine reads the promoted one.

Layout under the snapshot root (config `crosswalk_snapshots`):
  <name>/snapshots/<UTC time>-<sha8>.parquet   write-once candidates
  <name>/current.json                          the promoted snapshot (atomic rename)
  <name>/last_refresh.json                     the last attempt, promoted or not, with checks

Checks: keys unique, keys non-null, and row-count drift against the promoted snapshot at
most `max_row_drift` (a fraction; the first snapshot has nothing to drift from).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from axiom_dagster.config.crosswalks import CrosswalkSpec
from axiom_dagster.crosswalks.files import normalise_key
from axiom_dagster.crosswalks.sources import read_source

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")


@dataclass
class CheckOutcome:
    name: str
    passed: bool
    detail: dict = field(default_factory=dict)


@dataclass
class RefreshResult:
    crosswalk: str
    file: str
    rows: int
    promoted: bool
    previous_rows: int | None
    checks: list[CheckOutcome]
    refreshed_at: str

    @property
    def failed_checks(self) -> list[str]:
        return [c.name for c in self.checks if not c.passed]


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str))
    os.replace(tmp, path)


def check_snapshot(table: pa.Table, keys: list[str], previous_rows: int | None, max_drift: float) -> list[CheckOutcome]:
    """Counts only in the details: key values may identify patients."""
    null_rows = 0
    for k in keys:
        null_rows += table.column(k).null_count + int(pc.sum(pc.equal(table.column(k), "")).as_py() or 0)
    key_table = table.select(keys).drop_null()
    distinct = key_table.group_by(keys).aggregate([]).num_rows if key_table.num_rows else 0
    duplicates = key_table.num_rows - distinct
    checks = [
        CheckOutcome("keys_unique", duplicates == 0, {"duplicate_rows": duplicates}),
        CheckOutcome("keys_not_null", null_rows == 0, {"null_or_empty_keys": null_rows}),
    ]
    if previous_rows is None or previous_rows == 0:
        checks.append(CheckOutcome("row_count_drift", True, {"rows": table.num_rows, "previous_rows": previous_rows}))
    else:
        drift = abs(table.num_rows - previous_rows) / previous_rows
        checks.append(CheckOutcome(
            "row_count_drift", drift <= max_drift,
            {"rows": table.num_rows, "previous_rows": previous_rows, "drift": round(drift, 4), "max_row_drift": max_drift},
        ))
    return checks


class SnapshotStore:
    def __init__(self, root: str | Path, name: str) -> None:
        if not _NAME.match(name):
            raise ValueError(f"crosswalk name {name!r} cannot be a folder name")
        self.name = name
        self.dir = Path(root) / name
        self.pointer = self.dir / "current.json"
        self.last = self.dir / "last_refresh.json"

    def current(self) -> dict | None:
        """The promoted snapshot's record (file, rows, promoted_at), or None."""
        try:
            return json.loads(self.pointer.read_text())
        except FileNotFoundError:
            return None

    def current_file(self) -> Path | None:
        cur = self.current()
        return self.dir / "snapshots" / cur["file"] if cur else None

    def last_refresh(self) -> dict | None:
        try:
            return json.loads(self.last.read_text())
        except FileNotFoundError:
            return None

    def refresh(self, spec: CrosswalkSpec, base_dir: Path | None = None, now: datetime | None = None) -> RefreshResult:
        table = read_source(self.name, spec, base_dir)
        return self.stage(table, spec, now)

    def stage(self, table: pa.Table, spec: CrosswalkSpec, now: datetime | None = None) -> RefreshResult:
        """Write `table` as a candidate, check it, promote it if every check passes."""
        now = now or datetime.now(timezone.utc)
        if spec.case_insensitive:  # keys are stored folded so lookups need no per-row work
            for k in spec.keys:
                folded = pa.array([normalise_key(v, True) if v is not None else None for v in table.column(k).to_pylist()],
                                  type=pa.string())
                table = table.set_column(table.column_names.index(k), k, folded)
        (self.dir / "snapshots").mkdir(parents=True, exist_ok=True)
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, compression="zstd")
        data = sink.getvalue().to_pybytes()
        fname = f"{now.strftime('%Y%m%dT%H%M%S%fZ')}-{hashlib.sha256(data).hexdigest()[:8]}.parquet"
        target = self.dir / "snapshots" / fname
        tmp = target.with_suffix(".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, target)
        cur = self.current()
        previous_rows = cur["rows"] if cur else None
        checks = check_snapshot(table, list(spec.keys), previous_rows, spec.max_row_drift)
        promoted = all(c.passed for c in checks)
        result = RefreshResult(self.name, fname, table.num_rows, promoted, previous_rows, checks, now.isoformat())
        if promoted:
            _write_json(self.pointer, {"file": fname, "rows": table.num_rows, "keys": list(spec.keys),
                                       "columns": table.column_names, "promoted_at": now.isoformat()})
        _write_json(self.last, {**asdict(result), "checks": [asdict(c) for c in checks]})
        return result
