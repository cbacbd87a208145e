"""Group commit (ingest/group_commit.py): instances that arrive while a flush runs are made
durable by the next flush together (files fdatasync'ed and renamed, each folder fsync'ed
once, one ledger transaction), and every caller gets its own ledger id or its own error."""
from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

import axiom_dagster.ingest.group_commit as group_commit
from axiom_dagster.ingest.arrival import ArrivalMeta
from axiom_dagster.ingest.group_commit import GroupCommit
from axiom_dagster.ingest.landing import InstanceIds, LandingZone


def _row(i: int, path: Path) -> dict:
    return dict(received_at=ArrivalMeta().received_at, arrival_date="2026-12-01", study_uid="1.2.3",
                series_uid="1.2.3.4", sop_uid=f"1.2.3.4.{i}", path=str(path), size=1, source="unit")


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
