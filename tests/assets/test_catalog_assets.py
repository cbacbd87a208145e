"""Catalog assets: day-wide checks that stay failed while the day's data is wrong, metadata,
and compaction keeping every row."""
from datetime import date, datetime, timezone

import polars as pl
from dagster import materialize

from assets.catalog import catalog_compaction, catalog_tables
from axiom_dagster.catalog.tables import connect, instance_table, write_batch
from resources import AxiomResource
from tests.helpers import make_config, write_config_file


def _rows(batch_id: int, n: int, sop_prefix: str, modality="CT"):
    return [
        {
            "sop_instance_uid": f"{sop_prefix}.{i}", "sop_class_uid": "1.2.840.10008.5.1.4.1.1.2",
            "study_instance_uid": f"{sop_prefix}", "series_instance_uid": f"{sop_prefix}.4", "modality": modality,
            "study_date": date(2024, 1, 2), "received_at": datetime(2024, 1, 2, 8, tzinfo=timezone.utc),
            "ledger_id": batch_id * 100 + i, "batch_id": batch_id, "file_size": 10, "destinations": ["a"],
        }
        for i in range(n)
    ]


def _resource(tmp_path):
    config = make_config(tmp_path, f"sqlite:///{tmp_path / 'state.db'}")
    return config, AxiomResource(config_path=str(write_config_file(config, tmp_path / "axiom.yaml")))


def _checks(result):
    return {c.check_name: c.passed for c in result.get_asset_check_evaluations()}


def test_day_checks_fail_until_the_day_is_right_whatever_the_next_batch(tmp_path):
    config, resource = _resource(tmp_path)
    root = config.catalog_path
    day = "2024-01-02"
    write_batch(root, day, "batch-00000001", _rows(1, 3, "1.1", modality=None))  # required column missing
    first = materialize([catalog_tables], resources={"axiom": resource}, partition_key=day)
    assert _checks(first)["required_columns_non_null"] is False
    write_batch(root, day, "batch-00000002", _rows(2, 3, "1.2"))  # a good batch the same day
    second = materialize([catalog_tables], resources={"axiom": resource}, partition_key=day)
    checks = _checks(second)
    assert checks["required_columns_non_null"] is False  # still visible: the day still has the bad rows
    assert checks["sop_instance_uid_unique_in_catalog"] and checks["series_counts_consistent"] and checks["study_counts_consistent"]
    meta = second.asset_materializations_for_node("catalog_tables")
    by_key = {m.asset_key.to_user_string(): m.metadata for m in meta}
    assert by_key["catalog_instances"]["rows_in_day"].value == 6
    assert by_key["catalog_studies"]["studies_in_day"].value == 2
    assert "| study_instance_uid |" in by_key["catalog_instances"]["preview"].value


def test_a_duplicate_written_behind_the_writer_fails_the_uniqueness_check(tmp_path):
    config, resource = _resource(tmp_path)
    root = config.catalog_path
    write_batch(root, "2024-01-02", "batch-00000001", _rows(1, 2, "1.1"))
    # A file copied in by hand (not through write_batch) repeats the rows: nothing resolves it.
    folder = tmp_path / "catalog" / "instances" / "arrival_date=2024-01-02"
    pl.read_parquet(folder / "batch-00000001.parquet").write_parquet(folder / "copy.parquet")
    result = materialize([catalog_tables], resources={"axiom": resource}, partition_key="2024-01-02")
    checks = _checks(result)
    assert checks["sop_instance_uid_unique_in_catalog"] is False
    assert checks["series_counts_consistent"] is False  # the copy has no series file


def test_compaction_merges_past_days_and_keeps_rows(tmp_path):
    config, resource = _resource(tmp_path)
    root = config.catalog_path
    for b in range(1, 4):
        write_batch(root, "2024-01-02", f"batch-{b:08d}", instance_table(_rows(b, 2, f"1.{b}")))
    today = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    for b in range(4, 6):
        write_batch(root, today, f"batch-{b:08d}", _rows(b, 2, f"1.{b}"))

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


def _batch_run(resource, instance, day: str, batch_id: int):
    """catalog_tables as the pipeline job runs it: tagged with its batch."""
    return materialize([catalog_tables], resources={"axiom": resource}, partition_key=day, instance=instance,
                       tags={"axiom/batch_id": str(batch_id)})


def _metadata(result):
    return {m.asset_key.to_user_string(): m.metadata for m in result.asset_materializations_for_node("catalog_tables")}


def test_in_a_pipeline_run_the_checks_read_the_batch_files_and_a_failure_keeps_the_day_checked(tmp_path):
    from dagster import DagsterInstance

    config, resource = _resource(tmp_path)
    root, day = config.catalog_path, "2024-01-02"
    instance = DagsterInstance.ephemeral()
    write_batch(root, day, "batch-00000001", _rows(1, 3, "1.1"))
    write_batch(root, day, "batch-00000002", _rows(2, 4, "1.2"))
    good = _batch_run(resource, instance, day, 2)
    assert all(_checks(good).values())
    meta = _metadata(good)
    assert meta["catalog_instances"]["rows_in_batch"].value == 4  # only batch 2's file
    assert meta["catalog_studies"]["studies_in_batch"].value == 1
    assert "| study_instance_uid |" in meta["catalog_instances"]["preview"].value

    write_batch(root, day, "batch-00000003", _rows(3, 2, "1.3", modality=None))  # required column missing
    assert _checks(_batch_run(resource, instance, day, 3))["required_columns_non_null"] is False
    write_batch(root, day, "batch-00000004", _rows(4, 2, "1.4"))  # a good batch after it, same day
    after = _batch_run(resource, instance, day, 4)
    assert _checks(after)["required_columns_non_null"] is False  # still failed: the day has the bad rows
    assert _metadata(after)["catalog_instances"]["rows_in_day"].value == 11
    # Once the day is right again, batches are checked on their own files again.
    write_batch(root, day, "batch-00000003", _rows(3, 2, "1.3"))  # the bad batch re-run, corrected
    assert all(_checks(_batch_run(resource, instance, day, 4)).values())
    assert "rows_in_batch" in _metadata(_batch_run(resource, instance, day, 4))["catalog_instances"]


def test_in_a_pipeline_run_a_duplicate_elsewhere_and_wrong_rollups_fail_the_checks(tmp_path):
    from dagster import DagsterInstance

    config, resource = _resource(tmp_path)
    root = config.catalog_path
    write_batch(root, "2024-01-02", "batch-00000001", _rows(1, 2, "1.1"))
    # The batch's rows also in a file of another day, copied in by hand (not through write_batch).
    other = tmp_path / "catalog" / "instances" / "arrival_date=2024-01-01"
    other.mkdir(parents=True)
    pl.read_parquet(tmp_path / "catalog" / "instances" / "arrival_date=2024-01-02" / "batch-00000001.parquet").write_parquet(other / "copy.parquet")
    series = tmp_path / "catalog" / "series" / "arrival_date=2024-01-02" / "batch-00000001.parquet"
    pl.read_parquet(series).with_columns(pl.col("instances") + 1).write_parquet(series)  # a rollup that lies
    checks = _checks(_batch_run(resource, DagsterInstance.ephemeral(), "2024-01-02", 1))
    assert checks["sop_instance_uid_unique_in_catalog"] is False
    assert checks["series_counts_consistent"] is False
    assert checks["study_counts_consistent"] is True
