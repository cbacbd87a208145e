"""Columns as the build's workers return them (list columns flattened) give the same
DataFrame as polars building it from the rows, also when chunks are concatenated."""
from __future__ import annotations

import os
from datetime import datetime, timezone

import polars as pl

from axiom_dagster.catalog.build import extract_chunk
from axiom_dagster.catalog.columns import SORT_KEYS, concat_columns, instance_columns, instance_table
from axiom_dagster.catalog.schema import INSTANCE_SCHEMA
from tests.catalog.test_extract import REAL_WORLD
from tests.helpers import small_archive


def _rows(columns: dict) -> list[dict]:
    n = len(columns["sop_instance_uid"])
    return [{name: columns[name][i] for name in columns} for i in range(n)]


def test_flat_list_columns_equal_polars_own_conversion(tmp_path):
    paths = [str(p) for p in small_archive(tmp_path / "a", studies=1, series=2, instances=2)] + REAL_WORLD[:40]
    files = [(p, os.path.getsize(p), 0) for p in paths]
    now = datetime(2024, 6, 1, tzinfo=timezone.utc)
    first, *_ = extract_chunk(files[:20], "r", now)
    second, *_ = extract_chunk(files[20:], "r", now)
    rows = _rows(instance_table(first).to_dict(as_series=False)) + _rows(instance_table(second).to_dict(as_series=False))
    expected = pl.DataFrame(rows, schema=INSTANCE_SCHEMA, orient="row").sort(SORT_KEYS, nulls_last=True)
    assert any(r["bulk_data"] for r in rows) and any(r["pixel_spacing"] is None for r in rows)
    got = instance_table(concat_columns([first, second]))
    assert got.equals(expected, null_equal=True)
    assert instance_table(instance_columns(rows)).equals(expected, null_equal=True)
