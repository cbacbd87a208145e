"""The catalog's SOP Instance UID index: a batch reads only the files that can hold its UIDs
(a file it does not need is never opened), files the index does not cover are read and then
indexed, and files that are gone (compaction) are forgotten. Same answers as reading all."""
from __future__ import annotations

from pathlib import Path

import pytest

from axiom_dagster.catalog import uid_index
from axiom_dagster.catalog.compaction import compact_partition
from axiom_dagster.catalog.tables import connect, duplicated_in_catalog, instance_table, write_batch
from axiom_dagster.catalog.uid_index import UidIndex
from tests.catalog.test_catalog import _rows

DAY, NEXT = "2024-01-02", "2024-01-03"


def _file(root: str, day: str, batch: int) -> Path:
    return Path(root) / "instances" / f"arrival_date={day}" / f"batch-{batch:08d}.parquet"


def _ruin(path: Path) -> None:
    """Not Parquet any more: reading it fails, so a batch that succeeds did not read it."""
    path.write_bytes(b"not parquet" * 10)


def test_a_batch_reads_only_the_files_holding_its_uids(tmp_path, store):
    root = str(tmp_path / "catalog")
    index = UidIndex(store.engine, root)
    write_batch(root, DAY, "batch-00000001", _rows(1, 4, "1.1"), index=index)
    write_batch(root, DAY, "batch-00000002", _rows(2, 4, "1.2"), index=index)
    _ruin(_file(root, DAY, 2))

    # Two of batch 1's instances again: batch 2's (ruined) file is not needed and not read.
    written = write_batch(root, NEXT, "batch-00000003", _rows(3, 2, "1.1"), index=index)
    assert written.superseded == ["1.1.0", "1.1.1"]
    assert written.rewritten == ["instances/arrival_date=2024-01-02/batch-00000001.parquet"]
    assert duplicated_in_catalog(root, ["1.1.0", "1.1.1"], index) == 0
    # Without the index every file is read, the ruined one included.
    with pytest.raises(Exception):
        write_batch(root, NEXT, "batch-00000004", _rows(4, 1, "1.1"))


def test_files_not_indexed_are_read_then_indexed(tmp_path, store, monkeypatch):
    root = str(tmp_path / "catalog")
    index = UidIndex(store.engine, root)
    # Written without the index, as `axiom catalog build` or an older version did.
    for b in (1, 2, 3):
        write_batch(root, DAY, f"batch-{b:08d}", _rows(b, 3, f"1.{b}"))
    monkeypatch.setattr(uid_index, "UNCOVERED_ROWS_PER_CALL", 4)  # one or two files per call

    written = write_batch(root, NEXT, "batch-00000004", _rows(4, 1, "1.3"), index=index)
    assert written.superseded == ["1.3.0"]  # found in a file the index did not cover
    files = [f"instances/arrival_date={DAY}/batch-{b:08d}.parquet" for b in (1, 2, 3)]
    first = index.plan(files, []).uncovered
    assert len(first) == 2  # bounded: one file (3 rows) indexed by that batch, two left
    write_batch(root, NEXT, "batch-00000005", _rows(5, 1, "1.9"), index=index)
    write_batch(root, NEXT, "batch-00000006", _rows(6, 1, "1.8"), index=index)
    assert index.plan(files, []).uncovered == []
    # Now covered: a re-sent instance of batch 2 reads batch 2's file only.
    _ruin(_file(root, DAY, 1))
    _ruin(_file(root, DAY, 3))
    assert write_batch(root, NEXT, "batch-00000007", _rows(7, 1, "1.2"), index=index).superseded == ["1.2.0"]


@pytest.mark.parametrize("compaction_indexes", [False, True])
def test_compacted_files_are_indexed_and_removed_ones_forgotten(tmp_path, store, compaction_indexes):
    root = str(tmp_path / "catalog")
    index = UidIndex(store.engine, root)
    for b in (1, 2, 3):
        write_batch(root, DAY, f"batch-{b:08d}", _rows(b, 2, f"1.{b}"), index=index)
    assert compact_partition(root, DAY, min_files=2, index=index if compaction_indexes else None) == (3, 6)
    (compacted,) = (Path(root) / "instances" / f"arrival_date={DAY}").glob("*.parquet")
    rel = str(compacted.relative_to(root))
    assert index.plan([rel], []).uncovered == ([] if compaction_indexes else [rel])

    # Not indexed by the compaction: read, superseded from, then indexed by the next batch.
    written = write_batch(root, NEXT, "batch-00000004", _rows(4, 1, "1.2"), index=index)
    assert written.superseded == ["1.2.0"]
    plan = index.plan([rel, "instances/arrival_date=2024-01-03/batch-00000004.parquet"], ["1.1.0"])
    assert plan.uncovered == [] and plan.read == [rel] and plan.gone == []  # the 3 batch files forgotten
    con = connect(root)
    assert con.execute("SELECT count(*), count(DISTINCT sop_instance_uid) FROM instances").fetchone() == (6, 6)


def test_the_check_counts_a_duplicate_in_a_file_not_indexed(tmp_path, store):
    root = str(tmp_path / "catalog")
    index = UidIndex(store.engine, root)
    write_batch(root, DAY, "batch-00000001", _rows(1, 3, "1.1"), index=index)
    # A second row of 1.1.2 in a file written behind the writers' back (not indexed).
    stray = Path(root) / "instances" / f"arrival_date={NEXT}" / "stray.parquet"
    stray.parent.mkdir(parents=True)
    instance_table(_rows(9, 3, "1.1")[2:]).write_parquet(stray)
    assert duplicated_in_catalog(root, ["1.1.0", "1.1.2"], index) == 1
    assert duplicated_in_catalog(root, ["1.1.0", "1.1.2"]) == 1


def test_axiom_catalog_index_covers_an_existing_catalog(tmp_path, store_url, capsys):
    from axiom_dagster.catalog.storage import CatalogStorage
    from axiom_dagster.catalog.tables import data_files
    from axiom_dagster.cli import main
    from axiom_dagster.store.state import StateStore
    from tests.helpers import make_config, write_config_file

    config = make_config(tmp_path, store_url)
    path = write_config_file(config, tmp_path / "axiom.yaml")
    for b in (1, 2, 3):  # an existing catalog, written before the index
        write_batch(config.catalog_path, DAY, f"batch-{b:08d}", _rows(b, 3, f"1.{b}"))
    assert main(["--config", str(path), "catalog", "index"]) == 0
    assert "3 of 3 instances files indexed" in capsys.readouterr().out
    store = StateStore(store_url)
    index = UidIndex(store.engine, config.catalog_path)
    files = data_files(CatalogStorage(config.catalog_path), "instances")
    assert index.plan(files, ["1.2.1"]).read == [f"instances/arrival_date={DAY}/batch-00000002.parquet"]
    assert main(["--config", str(path), "catalog", "index"]) == 0
    assert "0 of 3 instances files indexed (3 were already)" in capsys.readouterr().out


def test_axiom_catalog_build_into_the_configured_catalog_keeps_the_index(tmp_path, store_url):
    from axiom_dagster.catalog.storage import CatalogStorage
    from axiom_dagster.catalog.tables import data_files
    from axiom_dagster.cli import main
    from axiom_dagster.store.state import StateStore
    from tests.helpers import make_config, small_archive, write_config_file

    config = make_config(tmp_path, store_url)
    path = write_config_file(config, tmp_path / "axiom.yaml")
    small_archive(tmp_path / "archive", studies=2, series=1, instances=5)
    args = ["--config", str(path), "catalog", "build", str(tmp_path / "archive"), "--workers", "1", "--no-progress"]
    assert main(args) == 0
    files = data_files(CatalogStorage(config.catalog_path), "instances")
    assert files
    assert UidIndex(StateStore(store_url).engine, config.catalog_path).plan(files, []).uncovered == []


def test_forgetting_a_file_deletes_through_an_index_on_file_id(store):
    """forget() deletes a compacted file's rows by file_id: an index serves it, so it does not
    scan every indexed UID of the catalog (migration 0009)."""
    from sqlalchemy import inspect, text

    indexes = inspect(store.engine).get_indexes("catalog_uids")
    assert any(ix["column_names"] == ["file_id"] for ix in indexes), indexes
    if store.engine.dialect.name == "sqlite":
        with store.engine.connect() as conn:
            plan = " ".join(str(r[-1]) for r in conn.execute(text("EXPLAIN QUERY PLAN DELETE FROM catalog_uids WHERE file_id IN (1, 2)")))
        assert "ix_catalog_uids_file_id" in plan, plan
