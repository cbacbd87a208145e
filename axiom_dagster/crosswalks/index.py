"""The in-memory lookup index a compiled rule uses: key tuple -> row tuple.

Built once per run from the promoted Parquet snapshot (or a plain CSV/Parquet file), column
by column through Arrow: no per-row dicts, so a million keys load in about a second.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import pyarrow.parquet as pq


class CrosswalkIndex:
    """`get(key)` gives the row's values in `columns` order (text; None for null), or None."""

    __slots__ = ("name", "key_columns", "columns", "rows")

    def __init__(self, name: str, key_columns: Sequence[str], columns: Sequence[str], rows: dict) -> None:
        self.name = name
        self.key_columns = tuple(key_columns)
        self.columns = tuple(columns)
        self.rows = rows

    def get(self, key: tuple[str, ...]) -> tuple | None:
        return self.rows.get(key)

    def position(self, column: str) -> int:
        return self.columns.index(column)

    def __len__(self) -> int:
        return len(self.rows)


def build_index(name: str, key_columns: Sequence[str], columns: Sequence[str], data: dict[str, list]) -> tuple[CrosswalkIndex, int]:
    """Index from column lists; returns the index and the number of duplicate keys dropped
    (the first row of a key wins)."""
    keys = zip(*(data[k] for k in key_columns))
    rows = dict(zip(keys, zip(*(data[c] for c in columns))))
    n = len(data[key_columns[0]]) if key_columns else 0
    return CrosswalkIndex(name, key_columns, columns, rows), n - len(rows)


def load_parquet_index(name: str, path: Path, key_columns: Sequence[str]) -> CrosswalkIndex:
    table = pq.read_table(path)
    columns = table.column_names
    data = {c: table.column(c).to_pylist() for c in columns}
    index, _ = build_index(name, key_columns, columns, data)
    return index
