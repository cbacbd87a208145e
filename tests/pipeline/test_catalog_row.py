"""The pipeline's catalog row, read from the arrival's raw bytes, is the row pydicom's
reading of the same bytes gives (real-world corpus and synthetic files)."""
from __future__ import annotations

import io
from datetime import datetime, timezone
from pathlib import Path

from pydicom import dcmread

from axiom_dagster.catalog.extract import instance_row
from axiom_dagster.catalog.fast_extract import fast_instance_row
from axiom_dagster.dicom.header_reader import read_header_bytes
from axiom_dagster.pipeline.worker import WorkerSettings, catalog_row
from axiom_dagster.store.records import LedgerRow
from tests.catalog.test_extract import REAL_WORLD
from tests.helpers import small_archive

SETTINGS = WorkerSettings(targets=(), quarantine_root=Path("/nonexistent"), batch_id=7, run_id="run-7")


def _ledger_row(path: Path, ds) -> LedgerRow:
    return LedgerRow(
        id=3, received_at=datetime(2026, 12, 1, tzinfo=timezone.utc), arrival_date="2026-12-01",
        study_uid=str(ds.get("StudyInstanceUID", "")), series_uid=str(ds.get("SeriesInstanceUID", "")),
        sop_uid=str(ds.get("SOPInstanceUID", "")), sop_class_uid=None, transfer_syntax_uid=None,
        path=str(path), size=path.stat().st_size, source="test", calling_ae="MODALITY", called_ae=None,
        source_ip=None, association_id=None,
    )


def _same_row(path: Path) -> bool:
    data = path.read_bytes()
    try:
        ds = dcmread(io.BytesIO(data))
    except Exception:
        return False  # the pipeline quarantines what pydicom cannot read
    row = _ledger_row(path, ds)
    expected = instance_row(ds, row, batch_id=7, run_id="run-7", status="routed", destinations=["archive"])
    got = catalog_row(data, ds, row, SETTINGS, ["archive"])
    different = sorted(k for k in expected if got.get(k) != expected[k])
    assert not different, (path.name, different)
    assert got == expected
    return True


def _read_raw(path: Path) -> bool:
    try:
        fast_instance_row(read_header_bytes(path.read_bytes()))
    except Exception:
        return False
    return True


def test_real_world_rows_are_pydicom_rows():
    compared = [Path(p) for p in REAL_WORLD if _same_row(Path(p))]
    assert len(compared) > 100
    # ... and most of them were read from raw bytes, not left to pydicom
    assert sum(map(_read_raw, compared)) >= 0.85 * len(compared)


def test_synthetic_rows_are_pydicom_rows(tmp_path):
    paths = small_archive(tmp_path / "a", studies=1, series=2, instances=2)
    assert all(_same_row(Path(p)) for p in paths)
    row = catalog_row(Path(paths[0]).read_bytes(), dcmread(paths[0]), _ledger_row(Path(paths[0]), dcmread(paths[0])),
                      SETTINGS, ["archive"])
    assert (row["status"], row["batch_id"], row["ledger_id"], row["destinations"]) == ("routed", 7, 3, ["archive"])
