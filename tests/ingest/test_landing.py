import json
from pathlib import Path

import pytest
from pydicom import dcmread

from axiom_dagster.ingest.arrival import ArrivalMeta
from axiom_dagster.ingest.landing import InstanceIds, LandingZone, NotLandable, read_instance_ids
from axiom_dagster.dicom.uids import InvalidUID

from tests.helpers import land_folder, retagged, small_archive


def test_land_writes_file_then_ledger_row(config, store, tmp_path):
    src = small_archive(tmp_path / "in", studies=1, series=1, instances=1)[0]
    zone = LandingZone(config.landing_path, config.quarantine_path, store)
    ids = read_instance_ids(src)
    meta = ArrivalMeta(source="unit", calling_ae="MOD1", called_ae="AXIOM", source_ip="127.0.0.1")
    ledger_id = zone.land(ids, lambda fh: fh.write(src.read_bytes()), meta)
    (row,) = store.ledger_after(0, 10)
    assert row.id == ledger_id and row.sop_uid == ids.sop_uid and row.calling_ae == "MOD1"
    assert Path(row.path).read_bytes() == src.read_bytes()
    assert row.size == src.stat().st_size
    assert not list(Path(row.path).parent.glob(".*.tmp"))


def test_failed_write_leaves_nothing(config, store, tmp_path):
    zone = LandingZone(config.landing_path, config.quarantine_path, store)
    ids = InstanceIds.validated("1.2.3", "1.2.3.4", "1.2.3.4.5")

    def broken(fh):
        fh.write(b"partial")
        raise OSError("device full")

    with pytest.raises(OSError):
        zone.land(ids, broken, ArrivalMeta())
    assert store.ledger_count() == 0
    assert not [p for p in config.landing_path.rglob("*") if p.is_file()]


def test_uids_are_validated_before_they_become_paths():
    with pytest.raises(InvalidUID):
        InstanceIds.validated("1.2.3", "../../etc", "1.2.3.4.5")


def test_import_lands_dicom_and_quarantines_non_dicom(config, store, tmp_path):
    folder = tmp_path / "in"
    paths = small_archive(folder, studies=2, series=1, instances=3)
    (folder / "notes.txt").write_text("not an image")
    retagged(paths[0], folder / "bad-uid.dcm", SOPInstanceUID="1.2.03")
    report = land_folder(config, store, folder)
    assert report.landed == 6
    assert sorted(p.name for p, _ in report.rejected) == ["bad-uid.dcm", "notes.txt"]
    assert store.ledger_count() == 6
    exceptions = store.exceptions("landing")
    assert len(exceptions) == 2
    for exc in exceptions:
        kept = Path(exc["quarantine_path"])
        assert kept.exists()
        reason = json.loads(kept.with_name(kept.name + ".reason.json").read_text())
        assert reason["reason"] == exc["reason"]
    reasons = " | ".join(e["reason"] for e in exceptions)
    assert "not a DICOM Part 10 file" in reasons and "SOPInstanceUID is not a valid DICOM UID" in reasons
    # The landed copies parse and keep their identity.
    for row in store.ledger_after(0, 100):
        assert dcmread(row.path).SOPInstanceUID == row.sop_uid


def test_read_instance_ids_rejects_garbage(tmp_path):
    junk = tmp_path / "x.dcm"
    junk.write_bytes(b"\x00" * 50)
    with pytest.raises(NotLandable):
        read_instance_ids(junk)


def test_land_fsyncs_each_new_folder_once(config, store, tmp_path, monkeypatch):
    import axiom_dagster.ingest.group_commit as group_commit
    import axiom_dagster.ingest.landing as landing

    synced = []
    real = landing._fsync_dir
    monkeypatch.setattr(landing, "_fsync_dir", lambda d: (synced.append(Path(d)), real(d)))
    monkeypatch.setattr(group_commit, "fsync_dir", lambda d: (synced.append(Path(d)), real(d)))
    zone = LandingZone(config.landing_path, config.quarantine_path, store, sync="file")
    meta = ArrivalMeta(source="unit")
    for i in range(3):
        zone.land(InstanceIds.validated("1.2.3", "1.2.3.4", f"1.2.3.4.{i}"), lambda fh: fh.write(b"x"), meta)
    study_dir = config.landing_path / meta.received_at.strftime("%Y-%m-%d") / "1.2.3"
    # root's parent, date folder's parent (root), study folder's parent once; the study folder per rename
    assert synced.count(study_dir.parent) == 1 and synced.count(study_dir) == 3
    # a folder removed behind the zone's back is made again
    import shutil

    shutil.rmtree(study_dir.parent)
    zone.land(InstanceIds.validated("1.2.3", "1.2.3.4", "1.2.3.4.9"), lambda fh: fh.write(b"x"), meta)
    assert [p.read_bytes() for p in study_dir.glob("1.2.3.4.9.*.dcm")] == [b"x"]
