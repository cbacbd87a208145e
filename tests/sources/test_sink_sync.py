"""A retrieved study's files are made durable before its ledger rows: by one syncfs of the
landing filesystem (landing.sync: filesystem), or file by file (landing.sync: file)."""
from __future__ import annotations

from pathlib import Path

import pytest
from pydicom import dcmread

from axiom_dagster.ingest import landing
from axiom_dagster.ingest.fs_sync import FilesystemSync
from axiom_dagster.ingest.landing import LandingZone
from axiom_dagster.sources.sink import StudySink
from tests.helpers import small_archive


@pytest.mark.parametrize("mode", ["filesystem", "file"])
def test_a_retrieved_study_is_synced_then_recorded(store, tmp_path, monkeypatch, mode):
    if mode == "filesystem" and not FilesystemSync.available():
        pytest.skip("no syncfs here")
    files = small_archive(tmp_path / "in", studies=1, series=2, instances=3)
    zone = LandingZone(tmp_path / "landing", tmp_path / "quarantine", store, sync=mode)
    per_file, syncfs = [], []
    real_fdatasync = landing.fdatasync_path
    monkeypatch.setattr(landing, "fdatasync_path", lambda p: (per_file.append(p), real_fdatasync(p)))
    if zone.syncs_filesystem:
        real_sync = zone._group.fs.sync
        monkeypatch.setattr(zone._group.fs, "sync", lambda: (syncfs.append(len(store.ledger_after(0, 100))), real_sync()))
    study_uid = dcmread(files[0], stop_before_pixels=True).StudyInstanceUID
    with StudySink(zone, "archive", study_uid) as sink:
        for f in files:
            assert sink.add(f.read_bytes())
    rows = store.ledger_after(0, 100)
    assert len(rows) == 6 and all(Path(r.path).is_file() for r in rows)
    if mode == "filesystem":
        assert syncfs == [0] and per_file == []  # one syncfs, before any row was recorded
    else:
        assert syncfs == [] and sorted(per_file) == sorted(Path(r.path) for r in rows)
    zone.close()
