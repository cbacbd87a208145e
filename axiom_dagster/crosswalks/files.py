"""Crosswalk (lookup table) sources behind a small interface.

`CrosswalkLookup` is what actions use: `columns()`, and `index(key_columns)` giving a
CrosswalkIndex (key tuple -> row tuple), built once at compile time. `FileCrosswalk` reads a
plain CSV or Parquet file; `SnapshotCrosswalk` (lookup.py) reads a promoted snapshot.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Protocol, Sequence

from axiom_dagster.config.crosswalks import CrosswalkSpec
from axiom_dagster.crosswalks.index import CrosswalkIndex, build_index


class CrosswalkError(ValueError):
    pass


class CrosswalkLookup(Protocol):
    name: str
    case_insensitive: bool

    def columns(self) -> list[str]: ...

    def index(self, key_columns: Sequence[str]) -> CrosswalkIndex: ...


def normalise_key(value: object, case_insensitive: bool) -> str:
    text = "" if value is None else str(value).strip()
    return text.casefold() if case_insensitive else text


def index_columns(name: str, columns: list[str], data: dict[str, list], key_columns: Sequence[str],
                  case_insensitive: bool) -> CrosswalkIndex:
    missing = [c for c in key_columns if c not in columns]
    if missing:
        raise CrosswalkError(f"crosswalks.{name}: no column(s) {missing}; has {columns}")
    if case_insensitive:
        data = {**data, **{k: [normalise_key(v, True) for v in data[k]] for k in key_columns}}
    index, duplicates = build_index(name, key_columns, columns, data)
    if duplicates:
        # Counts only: key values may be identifiers.
        raise CrosswalkError(f"crosswalks.{name}: {duplicates} duplicate key(s) for columns {list(key_columns)}")
    return index


class FileCrosswalk:
    """A crosswalk loaded once from a CSV or Parquet file into memory."""

    def __init__(self, name: str, spec: CrosswalkSpec, base_dir: Path | None = None) -> None:
        self.name = name
        self.case_insensitive = spec.case_insensitive
        path = Path(spec.path)
        if not path.is_absolute() and base_dir is not None:
            path = Path(base_dir) / path
        fmt = spec.format or ("parquet" if path.suffix.lower() in (".parquet", ".pq") else "csv")
        if not path.exists():
            raise CrosswalkError(f"crosswalks.{name}.path: file not found: {path}")
        if fmt == "csv":
            with open(path, newline="", encoding=spec.encoding) as fh:
                reader = csv.reader(fh, delimiter=spec.delimiter)
                self._columns = next(reader, [])
                rows = [r + [""] * (len(self._columns) - len(r)) for r in reader]
            cols = list(zip(*rows)) if rows else [()] * len(self._columns)
            self._data = {c: [v.strip() for v in col] for c, col in zip(self._columns, cols)}
        else:
            import pyarrow.parquet as pq  # imported only when a Parquet crosswalk is used

            table = pq.read_table(path)
            self._columns = list(table.column_names)
            self._data = {c: ["" if v is None else str(v).strip() for v in table.column(c).to_pylist()]
                          for c in self._columns}

    def columns(self) -> list[str]:
        return list(self._columns)

    def index(self, key_columns: Sequence[str]) -> CrosswalkIndex:
        return index_columns(self.name, self._columns, self._data, key_columns, self.case_insensitive)
