"""Catalog files, views and compaction."""
from datetime import date, datetime, timezone

from dagster import materialize

from assets.catalog import catalog_compaction
from axiom_dagster.catalog.tables import connect, instance_table, write_batch
from resources import AxiomResource

from tests.helpers import make_config, write_config_file


def _rows(batch_id: int, n: int, sop_prefix: str):
    return [
        {
            "sop_instance_uid": f"{sop_prefix}.{i}", "sop_class_uid": "1.2.840.10008.5.1.4.1.1.2",
            "study_instance_uid": "1.2.3", "series_instance_uid": "1.2.3.4", "modality": "CT",
            "study_date": date(2024, 1, 2), "received_at": datetime(2024, 1, 2, 8, tzinfo=timezone.utc),
            "ledger_id": batch_id * 100 + i, "batch_id": batch_id, "file_size": 10, "destinations": ["a"],
        }
        for i in range(n)
    ]


def test_views_dedupe_resent_instances_and_roll_up(tmp_path):
    root = tmp_path / "catalog"
    assert connect(root).execute("SELECT count(*) FROM instances").fetchone()[0] == 0  # empty catalog works
    write_batch(root, "instances", "2024-01-02", 1, instance_table(_rows(1, 3, "1.9")))
    write_batch(root, "instances", "2024-01-03", 2, instance_table(_rows(2, 2, "1.9")))  # 2 re-sent
    con = connect(root)
    assert con.execute("SELECT count(*) FROM instances_all").fetchone()[0] == 5
    assert con.execute("SELECT count(*) FROM instances").fetchone()[0] == 3
    assert con.execute("SELECT max(batch_id) FROM instances WHERE sop_instance_uid = '1.9.0'").fetchone()[0] == 2
    assert con.execute("SELECT series, instances FROM studies").fetchone() == (1, 3)
    assert con.execute("SELECT typeof(study_date), typeof(arrival_date) FROM instances LIMIT 1").fetchone() == ("DATE", "DATE")


def test_compaction_merges_past_days_and_keeps_rows(tmp_path):
    config = make_config(tmp_path, f"sqlite:///{tmp_path / 'state.db'}")
    resource = AxiomResource(config_path=str(write_config_file(config, tmp_path / "axiom.yaml")))
    root = config.catalog_path
    for b in range(1, 4):
        write_batch(root, "instances", "2024-01-02", b, instance_table(_rows(b, 2, f"1.{b}")))
    today = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    for b in range(4, 6):
        write_batch(root, "instances", today, b, instance_table(_rows(b, 2, f"1.{b}")))

    result = materialize(
        [catalog_compaction], resources={"axiom": resource},
        run_config={"ops": {"catalog_compaction": {"config": {"min_files": 2}}}},
    )
    assert result.success
    old = sorted(p.name for p in (tmp_path / "catalog" / "instances" / "arrival_date=2024-01-02").iterdir())
    assert old == ["compacted-batch-00000001-batch-00000003.parquet"]
    assert len(list((tmp_path / "catalog" / "instances" / f"arrival_date={today}").iterdir())) == 2
    assert connect(root).execute("SELECT count(*) FROM instances").fetchone()[0] == 10
    (check,) = result.get_asset_check_evaluations()
    assert check.passed
