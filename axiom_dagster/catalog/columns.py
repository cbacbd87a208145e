"""Instance rows as columns, and columns as a polars DataFrame.

`instance_columns` runs in the build's worker processes (plain Python: polars is not
fork-safe), `instance_table` in the parent. List columns travel flattened (offsets, values,
which rows are NULL) and become Arrow list arrays in one step each: polars converting a
Python list of lists costs ~5 us a row per column, this ~0.2 us.
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import polars as pl

from axiom_dagster.catalog.schema import INSTANCE_SCHEMA

SORT_KEYS = ["study_instance_uid", "series_instance_uid", "instance_number", "sop_instance_uid"]
_LIST_COLUMNS = {name: dtype for name, dtype in INSTANCE_SCHEMA.items() if isinstance(dtype, pl.List)}


class FlatList(NamedTuple):
    """A list column: row i holds values[offsets[i]:offsets[i + 1]], NULL where nulls[i].
    Struct items (bulk_data) are flattened into one values list per field."""

    offsets: list[int]
    values: list | dict[str, list]
    nulls: list[bool] | None


def _flatten(lists: list, fields: list[str] | None) -> FlatList:
    offsets, nulls, end = [0], [], 0
    flat: list = []
    for value in lists:
        if value is None:
            nulls.append(True)
        else:
            nulls.append(False)
            end += len(value)
            flat += value
        offsets.append(end)
    values = {f: [item[f] for item in flat] for f in fields} if fields is not None else flat
    return FlatList(offsets, values, nulls if True in nulls else None)


def instance_columns(rows: Sequence[dict]) -> dict[str, list | FlatList]:
    """Rows as plain column lists (list columns flattened): what a forked worker returns."""
    out: dict[str, list | FlatList] = {}
    for name in INSTANCE_SCHEMA:
        values = [row.get(name) for row in rows]
        dtype = _LIST_COLUMNS.get(name)
        if dtype is not None:
            inner = dtype.inner
            values = _flatten(values, list(inner.to_schema()) if isinstance(inner, pl.Struct) else None)
        out[name] = values
    return out


def _list_series(name: str, flat: FlatList, dtype: pl.List) -> pl.Series:
    import pyarrow as pa

    inner = dtype.inner
    if isinstance(inner, pl.Struct):
        fields = inner.to_schema()
        values = pa.StructArray.from_arrays(
            [pl.Series(f, flat.values[f], dtype=t).to_arrow() for f, t in fields.items()], names=list(fields))
    else:
        values = pl.Series(name, flat.values, dtype=inner).to_arrow()
    mask = pl.Series(flat.nulls, dtype=pl.Boolean).to_arrow() if flat.nulls is not None else None
    array = pa.ListArray.from_arrays(pl.Series(flat.offsets, dtype=pl.Int32).to_arrow(), values, mask=mask)
    return pl.Series(name, pl.from_arrow(array)).cast(dtype)


def concat_columns(parts: list[dict[str, list | FlatList]]) -> dict[str, list | FlatList]:
    """Several chunks' columns (from instance_columns) as one."""
    if len(parts) == 1:
        return parts[0]
    out: dict[str, list | FlatList] = {}
    for name in parts[0]:
        first = parts[0][name]
        if not isinstance(first, FlatList):
            out[name] = [v for part in parts for v in part[name]]
            continue
        offsets, nulls, shift = [0], [], 0
        values: list | dict[str, list] = {f: [] for f in first.values} if isinstance(first.values, dict) else []
        for part in parts:
            flat = part[name]
            offsets += [o + shift for o in flat.offsets[1:]]
            shift = offsets[-1]
            nulls += flat.nulls or [False] * (len(flat.offsets) - 1)
            if isinstance(values, dict):
                for f in values:
                    values[f] += flat.values[f]
            else:
                values += flat.values
        out[name] = FlatList(offsets, values, nulls if True in nulls else None)
    return out


def instance_table(rows: Sequence[dict] | dict[str, list], *, sort: bool = True) -> pl.DataFrame:
    # polars, not pyarrow, converts Python values: pyarrow imports pandas for that (~1 s per run).
    columns = rows if isinstance(rows, dict) else instance_columns(rows)
    series = []
    for name, dtype in INSTANCE_SCHEMA.items():
        values = columns[name]
        if isinstance(values, FlatList):
            series.append(_list_series(name, values, dtype))
        else:
            series.append(pl.Series(name, values, dtype=dtype))
    frame = pl.DataFrame(series)
    return frame.sort(SORT_KEYS, nulls_last=True) if sort else frame
