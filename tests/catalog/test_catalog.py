"""Catalog files and views: write-time supersession, rollups, re-runs, compaction, old files."""
from __future__ import annotations

from datetime import date, datetime, timezone

import polars as pl
from pydicom import dcmread

from axiom_dagster.catalog.extract import instance_row
from axiom_dagster.catalog.compaction import compact_partition
from axiom_dagster.catalog.tables import connect, instance_table, write_batch
from tests.helpers import small_archive


def _rows(batch_id: int, n: int, sop_prefix: str, study="1.2.3", ledger_base=None):
    base = batch_id * 100 if ledger_base is None else ledger_base
    return [
        {
            "sop_instance_uid": f"{sop_prefix}.{i}", "sop_class_uid": "1.2.840.10008.5.1.4.1.1.2",
            "study_instance_uid": study, "series_instance_uid": f"{study}.4", "modality": "CT",
            "study_date": date(2024, 1, 2), "received_at": datetime(2024, 1, 2, 8, tzinfo=timezone.utc),
            "ledger_id": base + i, "batch_id": batch_id, "file_size": 10, "destinations": ["a"],
        }
        for i in range(n)
    ]


def _all(con, table="instances_all"):
    cols = "sop_instance_uid, ledger_id, batch_id, arrival_date"
    return sorted(con.execute(f"SELECT {cols} FROM {table}").fetchall())


def test_resent_instances_are_superseded_when_written(tmp_path):
    root = str(tmp_path / "catalog")
    assert connect(root).execute("SELECT count(*) FROM instances").fetchone()[0] == 0  # empty catalog works
    write_batch(root, "2024-01-02", "batch-00000001", _rows(1, 3, "1.9"))
    written = write_batch(root, "2024-01-03", "batch-00000002", _rows(2, 2, "1.9"))  # 2 re-sent
    assert written.superseded == ["1.9.0", "1.9.1"]
    assert written.rewritten == ["instances/arrival_date=2024-01-02/batch-00000001.parquet"]
    con = connect(root)
    assert con.execute("SELECT count(*), count(DISTINCT sop_instance_uid) FROM instances").fetchone() == (3, 3)
    assert con.execute("SELECT count(*) FROM instances_all").fetchone()[0] == 5
    assert con.execute("SELECT sop_instance_uid, batch_id, superseded_by FROM superseded ORDER BY 1").fetchall() == [
        ("1.9.0", 1, "batch-00000002"), ("1.9.1", 1, "batch-00000002")]
    assert con.execute("SELECT max(batch_id) FROM instances WHERE sop_instance_uid = '1.9.0'").fetchone()[0] == 2
    assert con.execute("SELECT series, instances FROM studies").fetchone() == (1, 3)
    assert con.execute("SELECT typeof(study_date), typeof(arrival_date) FROM instances LIMIT 1").fetchone() == ("DATE", "DATE")
    # The plain duckdb client reads the generated catalog.duckdb read-only.
    import duckdb

    plain = duckdb.connect(str(tmp_path / "catalog" / "catalog.duckdb"), read_only=True)
    assert plain.execute("SELECT count(*) FROM instances").fetchone()[0] == 3


def test_an_earlier_arrival_written_later_does_not_win(tmp_path):
    root = str(tmp_path / "catalog")
    write_batch(root, "2024-01-03", "batch-00000002", _rows(2, 2, "1.9", ledger_base=500))
    write_batch(root, "2024-01-02", "batch-00000001", _rows(1, 2, "1.9", ledger_base=100))
    con = connect(root)
    assert con.execute("SELECT list_sort(list(ledger_id)) FROM instances").fetchone()[0] == [500, 501]
    assert con.execute("SELECT list_sort(list(ledger_id)) FROM superseded").fetchone()[0] == [100, 101]


def test_rerunning_a_batch_changes_nothing(tmp_path):
    root = str(tmp_path / "catalog")
    write_batch(root, "2024-01-02", "batch-00000001", _rows(1, 3, "1.9"))
    write_batch(root, "2024-01-03", "batch-00000002", _rows(2, 2, "1.9"))
    before = _all(connect(root))
    files = sorted(p.relative_to(tmp_path) for p in (tmp_path / "catalog").rglob("*.parquet"))
    again = write_batch(root, "2024-01-03", "batch-00000002", _rows(2, 2, "1.9"))
    assert again.superseded == [] and again.rewritten == []
    assert _all(connect(root)) == before
    assert sorted(p.relative_to(tmp_path) for p in (tmp_path / "catalog").rglob("*.parquet")) == files


def test_series_and_studies_agree_with_instance_rows(tmp_path):
    root = str(tmp_path / "catalog")
    paths = small_archive(tmp_path / "a", studies=3, series=2, instances=3)
    rows = [instance_row(dcmread(p, defer_size=1024), file_path=str(p), file_size=p.stat().st_size,
                         received_at=datetime(2024, 1, 2, tzinfo=timezone.utc)) for p in paths]
    write_batch(root, "2024-01-02", "batch-00000001", rows[:10])
    write_batch(root, "2024-01-03", "batch-00000002", rows[8:])  # a study split over two batches, 2 re-sent
    con = connect(root)
    assert con.execute("""
        SELECT s.series_instance_uid, s.instances, s.bytes, s.modality FROM series s ORDER BY 1""").fetchall() == con.execute("""
        SELECT series_instance_uid, count(*), sum(file_size), any_value(modality) FROM instances GROUP BY 1 ORDER BY 1""").fetchall()
    assert con.execute("""
        SELECT study_instance_uid, series, instances, bytes, modalities, study_date FROM studies ORDER BY 1""").fetchall() == con.execute("""
        SELECT study_instance_uid, count(DISTINCT series_instance_uid), count(*), sum(file_size),
               list_sort(list_distinct(list(modality))), min(study_date) FROM instances GROUP BY 1 ORDER BY 1""").fetchall()
    assert con.execute("SELECT count(*) FROM instances").fetchone()[0] == len(paths)


def test_compaction_keeps_the_multiset_of_rows(tmp_path):
    root = str(tmp_path / "catalog")
    for b in range(1, 4):
        write_batch(root, "2024-01-02", f"batch-{b:08d}", _rows(b, 3, f"1.{b}", study=f"1.{b}"))
    write_batch(root, "2024-01-02", "batch-00000004", _rows(4, 2, "1.1", study="1.1"))  # supersedes 2
    con = connect(root)
    before = _all(con), con.execute("SELECT * FROM studies ORDER BY 1").fetchall()
    assert compact_partition(root, "2024-01-02", min_files=2) == (5, 9)  # 4 instances files, 1 superseded
    for table in ("instances", "series", "studies", "superseded"):
        folder = tmp_path / "catalog" / table / "arrival_date=2024-01-02"
        assert sorted(p.name for p in folder.iterdir()) == ["compacted-batch-00000001-batch-00000004.parquet"]
    assert not (tmp_path / "catalog" / ".compaction").exists()
    con = connect(root)
    assert (_all(con), con.execute("SELECT * FROM studies ORDER BY 1").fetchall()) == before


def test_an_old_schema_file_reads_new_columns_as_null_and_can_be_superseded(tmp_path):
    root = str(tmp_path / "catalog")
    write_batch(root, "2024-01-03", "batch-00000002", _rows(2, 1, "2.9"))
    # A file written by the first catalog version: fewer columns, no dicom_json, no warnings.
    old = instance_table(_rows(1, 2, "1.9")).select(
        "sop_instance_uid", "sop_class_uid", "study_instance_uid", "series_instance_uid", "modality",
        "study_date", "received_at", "ledger_id", "batch_id", "file_size", "destinations")
    folder = tmp_path / "catalog" / "instances" / "arrival_date=2024-01-01"
    folder.mkdir(parents=True)
    old.write_parquet(folder / "batch-00000001.parquet")
    con = connect(root)
    assert con.execute("SELECT sop_instance_uid, dicom_json, warnings FROM instances WHERE batch_id = 1 ORDER BY 1").fetchall() == [
        ("1.9.0", None, None), ("1.9.1", None, None)]
    write_batch(root, "2024-01-04", "batch-00000003", _rows(3, 1, "1.9"))  # re-sends 1.9.0
    con = connect(root)
    assert con.execute("SELECT count(*) FROM instances").fetchone()[0] == 3
    assert con.execute("SELECT sop_instance_uid FROM superseded").fetchall() == [("1.9.0",)]
    assert pl.read_parquet(folder / "batch-00000001.parquet")["sop_instance_uid"].to_list() == ["1.9.1"]
