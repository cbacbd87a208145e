"""Crosswalk (lookup table) sources behind a small interface.

`CrosswalkLookup` is what actions use: rows as dicts of text, and `index(key_columns)`
giving a dict from a key tuple to a row, built once at compile time. `FileCrosswalk` reads
CSV or Parquet; a later SQL-backed source implements the same two methods.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Mapping, Protocol, Sequence

from axiom_dagster.config.rules import CrosswalkSpec


class CrosswalkError(ValueError):
    pass


class CrosswalkLookup(Protocol):
    name: str

    def columns(self) -> list[str]: ...

    def index(self, key_columns: Sequence[str]) -> dict[tuple[str, ...], Mapping[str, str]]: ...


def normalise_key(value: object, case_insensitive: bool) -> str:
    text = "" if value is None else str(value).strip()
    return text.casefold() if case_insensitive else text


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
                reader = csv.DictReader(fh, delimiter=spec.delimiter)
                self._columns = list(reader.fieldnames or [])
                self._rows = [{k: ("" if v is None else v) for k, v in row.items()} for row in reader]
        else:
            import pyarrow.parquet as pq  # imported only when a Parquet crosswalk is used

            table = pq.read_table(path)
            self._columns = list(table.column_names)
            self._rows = [
                {k: ("" if v is None else str(v)) for k, v in row.items()} for row in table.to_pylist()
            ]

    def columns(self) -> list[str]:
        return list(self._columns)

    def index(self, key_columns: Sequence[str]) -> dict[tuple[str, ...], Mapping[str, str]]:
        missing = [c for c in key_columns if c not in self._columns]
        if missing:
            raise CrosswalkError(f"crosswalks.{self.name}: no column(s) {missing}; has {self._columns}")
        out: dict[tuple[str, ...], Mapping[str, str]] = {}
        for i, row in enumerate(self._rows):
            key = tuple(normalise_key(row[c], self.case_insensitive) for c in key_columns)
            if key in out:
                # Row numbers only: key values may be identifiers.
                raise CrosswalkError(
                    f"crosswalks.{self.name}: duplicate key for columns {list(key_columns)} at data row {i + 1}"
                )
            out[key] = row
        return out
