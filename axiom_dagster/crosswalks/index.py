"""The in-memory lookup index a compiled rule uses: key tuple -> row tuple.

Built once per run from column lists (the promoted Parquet snapshot read through Arrow, or a
plain CSV/Parquet file): no per-row dicts, so a million keys load in about a second.
"""
from __future__ import annotations

from typing import Sequence



class CrosswalkIndex:
    """`get(key)` gives the row's values in `columns` order (text; None for null), or None.

    With one key column the dict is keyed by the text itself (no 1-tuples: a million fewer
    objects to build); `get` still takes a key tuple.
    """

    __slots__ = ("name", "key_columns", "columns", "rows", "single")

    def __init__(self, name: str, key_columns: Sequence[str], columns: Sequence[str], rows: dict) -> None:
        self.name = name
        self.key_columns = tuple(key_columns)
        self.columns = tuple(columns)
        self.rows = rows
        self.single = len(self.key_columns) == 1

    def get(self, key: tuple[str, ...]) -> tuple | None:
        return self.rows.get(key[0] if self.single else key)

    def position(self, column: str) -> int:
        return self.columns.index(column)

    def __len__(self) -> int:
        return len(self.rows)


def build_index(name: str, key_columns: Sequence[str], columns: Sequence[str], data: dict[str, list]) -> tuple[CrosswalkIndex, int]:
    """Index from column lists; returns the index and the number of duplicate keys dropped
    (the first row of a key wins)."""
    keys = data[key_columns[0]] if len(key_columns) == 1 else zip(*(data[k] for k in key_columns))
    rows = dict(zip(keys, zip(*(data[c] for c in columns))))
    n = len(data[key_columns[0]]) if key_columns else 0
    return CrosswalkIndex(name, key_columns, columns, rows), n - len(rows)
