"""Group commit (ingest/group_commit.py): instances that arrive while a flush runs are made
durable by the next flush together (files fdatasync'ed and renamed, each folder fsync'ed
once, one ledger transaction), and every caller gets its own ledger id or its own error."""
from __future__ import annotations

import errno
import threading
import time
from pathlib import Path

import pytest

import axiom_dagster.ingest.group_commit as group_commit
from axiom_dagster.ingest.arrival import ArrivalMeta
from axiom_dagster.ingest.fs_sync import FilesystemSync
from axiom_dagster.ingest.group_commit import GroupCommit
from axiom_dagster.ingest.landing import InstanceIds, LandingZone


def _row(i: int, path: Path) -> dict:
    return dict(received_at=ArrivalMeta().received_at, arrival_date="2026-12-01", study_uid="1.2.3",
                series_uid="1.2.3.4", sop_uid=f"1.2.3.4.{i}", path=str(path), size=1, source="unit")


def _land_eight(group, folder, first) -> dict[int, int]:
    """Instance 0 lands first; once its flush has begun (`first` set), 1-7 arrive together
    and queue behind it: two groups. Returns ledger ids by instance."""
    ids: dict[int, int] = {}

    def land(i):
        tmp, final = folder / f".{i}.tmp", folder / f"{i}.dcm"
        tmp.write_bytes(b"x" * i)
        ids[i] = group.commit(_row(i, final), tmp, final)

    threads = [threading.Thread(target=land, args=(0,))]
    threads[0].start()
    assert first.wait(5)
    threads += [threading.Thread(target=land, args=(i,)) for i in range(1, 8)]
    for t in threads[1:]:
        t.start()
    for t in threads:
        t.join(10)
    return ids


def test_waiting_instances_share_one_flush(store, tmp_path, monkeypatch):
    """While the first flush is slow, seven more instances queue; they are flushed together:
    2 flushes for 8 instances, 8 files in place, 8 rows, one folder fsync per flush."""
    group = GroupCommit(store)
    real_sync, synced_dirs = group_commit.fdatasync_path, []
    first = threading.Event()

    def slow_first_sync(path):
        if not first.is_set():
            first.set()
            time.sleep(0.3)  # the others arrive meanwhile
        real_sync(path)

    monkeypatch.setattr(group_commit, "fdatasync_path", slow_first_sync)
    real_dir = group_commit.fsync_dir
    monkeypatch.setattr(group_commit, "fsync_dir", lambda d: (synced_dirs.append(d), real_dir(d)))
    folder = tmp_path / "study"
    folder.mkdir()
    ids = _land_eight(group, folder, first)
    assert group.groups == 2 and len(synced_dirs) == 2
    rows = {r.sop_uid: r for r in store.ledger_after(0, 100)}
    assert sorted(ids.values()) == sorted(r.id for r in rows.values())
    for i in range(8):
        assert (folder / f"{i}.dcm").read_bytes() == b"x" * i and rows[f"1.2.3.4.{i}"].id == ids[i]
    assert not list(folder.glob(".*.tmp"))


def test_a_failed_file_fails_only_its_own_instance(store, tmp_path):
    group = GroupCommit(store)
    folder = tmp_path / "study"
    folder.mkdir()
    with pytest.raises(FileNotFoundError):
        group.commit(_row(1, folder / "1.dcm"), folder / ".missing.tmp", folder / "1.dcm")
    tmp = folder / ".2.tmp"
    tmp.write_bytes(b"ok")
    assert group.commit(_row(2, folder / "2.dcm"), tmp, folder / "2.dcm") >= 1
    assert [r.sop_uid for r in store.ledger_after(0, 10)] == ["1.2.3.4.2"]


def test_land_file_moves_a_spool_file_into_place(config, store, tmp_path):
    zone = LandingZone(config.landing_path, config.quarantine_path, store)
    spool = tmp_path / "spool.dcm"
    spool.write_bytes(b"DICM-ish bytes")
    ids = InstanceIds.validated("1.2.3", "1.2.3.4", "1.2.3.4.5")
    ledger_id = zone.land_file(ids, spool, ArrivalMeta(source="unit"), sha256="ab" * 32)
    (row,) = store.ledger_after(0, 10)
    assert row.id == ledger_id and Path(row.path).read_bytes() == b"DICM-ish bytes" and not spool.exists()
    # identical bytes again: the landed file is kept, the new spool file removed, one more row
    spool.write_bytes(b"DICM-ish bytes")
    zone.land_file(ids, spool, ArrivalMeta(source="unit"), sha256="ab" * 32)
    rows = store.ledger_after(0, 10)
    assert len(rows) == 2 and rows[0].path == rows[1].path and not spool.exists()


# ---- one syncfs per group (ingest/fs_sync.py) ---------------------------------------------

class _CountingSync(FilesystemSync):
    """The real syncfs, counted; `fail` makes the next sync report a write-back error."""

    def __init__(self, root):
        super().__init__(root)
        self.calls = 0
        self.fail = False

    def sync(self):
        self.calls += 1
        if self.fail:
            raise OSError(errno.EIO, "write-back failed")
        super().sync()


needs_syncfs = pytest.mark.skipif(not FilesystemSync.available(), reason="no syncfs here")


@needs_syncfs
def test_a_group_is_synced_by_one_syncfs_not_file_by_file(store, tmp_path, monkeypatch):
    """Eight instances queued behind a slow first group: the second group's seven files are
    renamed into place and made durable by one syncfs; no fdatasync or folder fsync per file."""
    fs = _CountingSync(tmp_path)
    group = GroupCommit(store, fs)
    per_file = []
    monkeypatch.setattr(group_commit, "fdatasync_path", lambda p: per_file.append(p))
    monkeypatch.setattr(group_commit, "fsync_dir", lambda d: per_file.append(d))
    real_sync, first = fs.sync, threading.Event()

    def slow_first_sync():
        if not first.is_set():
            first.set()
            time.sleep(0.3)  # the others queue meanwhile
        real_sync()

    fs.sync = slow_first_sync
    folder = tmp_path / "study"
    folder.mkdir()
    _land_eight(group, folder, first)
    assert fs.calls == 2 and group.groups == 2 and per_file == []
    assert sorted(r.sop_uid for r in store.ledger_after(0, 100)) == [f"1.2.3.4.{i}" for i in range(8)]
    assert all((folder / f"{i}.dcm").read_bytes() == b"x" * i for i in range(8))


@needs_syncfs
def test_a_failed_syncfs_fails_its_group_and_records_no_row(store, tmp_path):
    fs = _CountingSync(tmp_path)
    group = GroupCommit(store, fs)
    folder = tmp_path / "study"
    folder.mkdir()
    tmp = folder / ".1.tmp"
    tmp.write_bytes(b"x")
    fs.fail = True
    with pytest.raises(OSError) as info:
        group.commit(_row(1, folder / "1.dcm"), tmp, folder / "1.dcm")
    assert info.value.errno == errno.EIO and store.ledger_after(0, 10) == []
    fs.fail = False  # the next group is synced and recorded
    tmp.write_bytes(b"y")
    group.commit(_row(2, folder / "2.dcm"), tmp, folder / "2.dcm")
    assert [r.sop_uid for r in store.ledger_after(0, 10)] == ["1.2.3.4.2"]


def test_the_next_group_syncs_its_files_while_a_group_commits_its_rows(store, tmp_path):
    """Two stages: while the first group's ledger transaction is slow, a second instance's
    file is synced (and waits for its row only), not after that transaction."""
    group = GroupCommit(store)
    in_ledger, synced_meanwhile = threading.Event(), threading.Event()
    real_append = store.append_ledger_group

    def slow_append(rows, connection=None):
        if not in_ledger.is_set():
            in_ledger.set()
            synced_meanwhile.wait(5)  # returns early only if the other file got synced
        return real_append(rows, connection)

    store.append_ledger_group = slow_append
    folder = tmp_path / "study"
    folder.mkdir()

    def land(i):
        tmp, final = folder / f".{i}.tmp", folder / f"{i}.dcm"
        tmp.write_bytes(b"x")
        group.commit(_row(i, final), tmp, final)

    first = threading.Thread(target=land, args=(0,))
    first.start()
    assert in_ledger.wait(5)
    real_fsync_dir = group_commit.fsync_dir

    def fsync_dir(d):
        real_fsync_dir(d)
        synced_meanwhile.set()

    group_commit.fsync_dir = fsync_dir
    try:
        started = time.monotonic()
        second = threading.Thread(target=land, args=(1,))
        second.start()
        assert synced_meanwhile.wait(5)  # stage one ran for the second group during the first's stage two
        first.join(10)
        second.join(10)
    finally:
        group_commit.fsync_dir = real_fsync_dir
    assert time.monotonic() - started < 5  # i.e. not released by the 5 s timeout above
    assert sorted(r.sop_uid for r in store.ledger_after(0, 10)) == ["1.2.3.4.0", "1.2.3.4.1"]


@needs_syncfs
def test_a_damaged_file_under_a_final_name_is_replaced_not_relied_on(config, store, tmp_path):
    """With syncfs, files are renamed before they are synced: after a power loss a final name
    may hold incomplete data (and no row). An identical arrival then lands its own bytes
    there instead of pointing its row to the damaged file."""
    from axiom_dagster.ingest.part10 import dataset_sha256, part10_layout
    from tests.helpers import small_archive

    zone = LandingZone(config.landing_path, config.quarantine_path, store)
    assert zone.syncs_filesystem
    data = small_archive(tmp_path / "src", studies=1, series=1, instances=1)[0].read_bytes()
    offset, _ = part10_layout(data[:4096])
    sha = dataset_sha256(data[offset:])
    ids = InstanceIds.validated("1.2.3", "1.2.3.4", "1.2.3.4.5")
    meta = ArrivalMeta(source="unit")
    final = zone.path_for(ids, meta.received_at.strftime("%Y-%m-%d"), sha)
    final.parent.mkdir(parents=True)
    final.write_bytes(data[:len(data) // 2])  # what a power loss may leave
    spool = tmp_path / "spool.dcm"
    spool.write_bytes(data)
    zone.land_file(ids, spool, meta, sha256=sha)
    (row,) = store.ledger_after(0, 10)
    assert Path(row.path) == final and final.read_bytes() == data
    # an intact file is kept: the next identical arrival only adds a row
    before = final.stat().st_ino
    spool.write_bytes(data)
    zone.land_file(ids, spool, meta, sha256=sha)
    assert len(store.ledger_after(0, 10)) == 2 and final.stat().st_ino == before and not spool.exists()
