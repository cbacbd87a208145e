"""The catalog on GCS and S3 (local stand-ins): per-batch writes, supersession, views
read by DuckDB through fsspec, `axiom sql` on the bucket."""
from __future__ import annotations

import subprocess
import sys
from datetime import date, datetime, timezone

import pytest

from axiom_dagster.catalog.storage import CatalogStorage
from axiom_dagster.catalog.compaction import compact_partition
from axiom_dagster.catalog.tables import connect, data_files, duplicated_in_catalog, write_batch
from axiom_dagster.catalog.uid_index import UidIndex
from axiom_dagster.store.state import StateStore


def _rows(batch_id: int, n: int, sop_prefix: str):
    return [
        {
            "sop_instance_uid": f"{sop_prefix}.{i}", "sop_class_uid": "1.2.840.10008.5.1.4.1.1.2",
            "study_instance_uid": "1.2.3", "series_instance_uid": "1.2.3.4", "modality": "MR",
            "patient_name": "Müller^Jürgen", "study_date": date(2024, 1, 2),
            "received_at": datetime(2024, 1, 2, 8, tzinfo=timezone.utc),
            "ledger_id": batch_id * 100 + i, "batch_id": batch_id, "file_size": 10,
        }
        for i in range(n)
    ]


@pytest.mark.parametrize("bucket", ["gcs_catalog", "s3_catalog"])
def test_round_trip_on_object_storage(bucket, request, tmp_path):
    root = request.getfixturevalue(bucket)
    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    store.migrate()
    index = UidIndex(store.engine, root)  # the SOP Instance UID index, as the pipeline writes
    write_batch(root, "2024-01-02", "batch-00000001", _rows(1, 3, "1.9"), index=index)
    written = write_batch(root, "2024-01-03", "batch-00000002", _rows(2, 2, "1.9"), index=index)
    assert written.superseded == ["1.9.0", "1.9.1"]
    files = CatalogStorage(root).list("instances")
    assert "instances/arrival_date=2024-01-03/batch-00000002.parquet" in files
    assert not any(".tmp" in f for f in files)
    con = connect(root)
    assert con.execute("SELECT count(*), count(DISTINCT sop_instance_uid), min(patient_name) FROM instances").fetchall() == [(3, 3, "Müller^Jürgen")]
    assert con.execute("SELECT count(*) FROM superseded").fetchall() == [(2,)]
    assert con.execute("SELECT series, instances FROM studies").fetchall() == [(1, 3)]
    write_batch(root, "2024-01-02", "batch-00000003", _rows(3, 1, "2.9"), index=index)
    assert compact_partition(root, "2024-01-02", min_files=2) == (2, 2)
    assert connect(root).execute("SELECT count(*) FROM instances_all").fetchall() == [(6,)]
    # The compacted file is not indexed yet: read from the bucket, superseded, then indexed.
    assert write_batch(root, "2024-01-04", "batch-00000004", _rows(4, 1, "2.9"), index=index).superseded == ["2.9.0"]
    assert index.plan(data_files(CatalogStorage(root), "instances"), []).uncovered == []
    assert duplicated_in_catalog(root, ["1.9.0", "1.9.2", "2.9.0"], index) == 0
    # `axiom sql` reads the bucket too.
    out = subprocess.run([sys.executable, "-m", "axiom_dagster.cli", "sql", "--catalog", root, "--format", "csv",
                          "SELECT sop_instance_uid FROM instances ORDER BY 1"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["sop_instance_uid", "1.9.0", "1.9.1", "1.9.2", "2.9.0"]
    assert connect(root).execute("SELECT count(*) FROM instances_all").fetchall() == [(7,)]
