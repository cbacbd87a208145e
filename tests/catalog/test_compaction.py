"""Compaction of an arrival day: superseded files merged too, a duplicate left by racing
writers moved to `superseded`, and readers never see a day half compacted."""
from __future__ import annotations

import polars as pl

from axiom_dagster.catalog import compaction
from axiom_dagster.catalog.compaction import compact_partition
from axiom_dagster.catalog.tables import connect, instance_table, write_batch
from tests.catalog.test_catalog import _all, _rows

DAY = "2024-01-02"


def _day_files(root, table):
    return sorted(p.name for p in (root / table / f"arrival_date={DAY}").glob("*.parquet"))


def test_superseded_files_are_merged_and_every_row_kept(tmp_path):
    root = tmp_path / "catalog"
    write_batch(str(root), DAY, "batch-00000001", _rows(1, 4, "1.1", study="1.1"))
    for b in range(2, 5):  # each re-sends 1.1.0: three superseded files, batches 2 and 3 end empty
        write_batch(str(root), DAY, f"batch-{b:08d}", _rows(b, 1, "1.1", study="1.1"))
    assert len(_day_files(root, "superseded")) == 3 and len(_day_files(root, "instances")) == 2
    before = _all(connect(str(root))), _all(connect(str(root)), "instances")
    assert compact_partition(str(root), DAY, min_files=3) == (5, 4)
    assert _day_files(root, "superseded") == _day_files(root, "instances") == ["compacted-batch-00000001-batch-00000004.parquet"]
    con = connect(str(root))
    assert (_all(con), _all(con, "instances")) == before


def test_a_duplicate_left_by_racing_writers_moves_to_superseded(tmp_path):
    root = tmp_path / "catalog"
    write_batch(str(root), DAY, "batch-00000001", _rows(1, 3, "1.7"))
    # A second writer's file with a later arrival of 1.7.1, written without supersession.
    late = instance_table(_rows(2, 1, "1.7", ledger_base=999)).with_columns(pl.lit("1.7.1").alias("sop_instance_uid"))
    late.write_parquet(root / "instances" / f"arrival_date={DAY}" / "batch-00000002.parquet")
    con = connect(str(root))
    assert con.execute("SELECT count(*) - count(DISTINCT sop_instance_uid) FROM instances").fetchone()[0] == 1
    before = _all(con)
    compact_partition(str(root), DAY, min_files=2)
    con = connect(str(root))
    assert con.execute("SELECT count(*), count(DISTINCT sop_instance_uid) FROM instances").fetchone() == (3, 3)
    assert con.execute("SELECT ledger_id FROM instances WHERE sop_instance_uid = '1.7.1'").fetchone()[0] == 999
    assert con.execute("SELECT ledger_id, superseded_by FROM superseded").fetchall() == [
        (101, "compacted-batch-00000001-batch-00000002")]
    assert _all(con) == before  # nothing lost: instances_all keeps both rows


def test_readers_see_the_whole_day_at_every_step(tmp_path, monkeypatch):
    root = tmp_path / "catalog"
    for b in range(1, 4):
        write_batch(str(root), DAY, f"batch-{b:08d}", _rows(b, 2, f"1.{b}", study=f"1.{b}"))
    write_batch(str(root), DAY, "batch-00000004", _rows(4, 1, "1.1", study="1.1"))
    con = connect(str(root))
    instances, everything = _all(con, "instances"), _all(con)
    assert compaction._swap_supported(str(root)), "this test needs renameat2 (Linux)"
    seen = []
    exchange = compaction._exchange

    def exchange_and_look(a, b):
        exchange(a, b)
        con = connect(str(root), prefer_file=False)
        seen.append((_all(con, "instances") == instances, sorted(set(_all(con))) == everything))

    monkeypatch.setattr(compaction, "_exchange", exchange_and_look)
    compact_partition(str(root), DAY, min_files=2)
    assert seen == [(True, True)] * 4  # superseded, series, studies, instances: each swap complete
