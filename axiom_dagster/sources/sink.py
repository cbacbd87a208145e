"""Where a retrieved study goes: the landing zone and the arrival ledger.

Each instance is written under its final landing name as it arrives (the data set checked to
parse to its end, hashed, temp file + rename), without an fsync of its own: a pulled study
is still held by its source. When the study's retrieval ends (and every FLUSH_EVERY
instances of a large one), the written files are synced (LandingZone.sync_written: one
syncfs, or fdatasync each and their folders), and only then are their ledger rows appended in one
transaction, under one association per study retrieval that is closed at once, so the
landing sensor sees the study complete. A crash before that leaves files without ledger
rows: nothing counted as retrieved, the study is retrieved again (same names, no
duplicates).

Instances of the study already in the ledger are skipped, not landed again: a retrieval that
was killed midway and re-run adds no duplicate rows. Instances that cannot be landed (not
DICOM, invalid UIDs, cut short) are kept in quarantine with the reason and counted failed.
"""
from __future__ import annotations

import threading
import uuid
from pathlib import Path

from axiom_dagster.ingest.arrival import ArrivalMeta
from axiom_dagster.ingest.landing import InstanceIds, LandingZone, _write_atomically
from axiom_dagster.ingest.part10 import Unreadable, check_complete, dataset_sha256, part10_layout
from axiom_dagster.ingest.rawheader import dataset_uids, instance_ids, part10_prefix
from axiom_dagster.dicom.uids import InvalidUID
from axiom_dagster.sources.base import StudyOutcome
from axiom_dagster.sources.progress import landed_sops

FLUSH_EVERY = 500  # instances synced and recorded together in a large study


class NotLandable(ValueError):
    """This instance cannot be landed; the message names the problem, never a value."""


def dataset_ids(data, transfer_syntax: str) -> InstanceIds:
    """Validated ids of an encoded data set, read from its raw bytes (pydicom as fallback)."""
    try:
        return instance_ids(dataset_uids(data, transfer_syntax), transfer_syntax)
    except (Unreadable, InvalidUID) as exc:
        raise NotLandable(str(exc)) from None


class StudySink:
    """Lands the instances of one study as they arrive; safe to call from several receiver
    threads (C-MOVE may bring one study on several associations)."""

    def __init__(self, zone: LandingZone, source: str, study_uid: str, *, calling_ae: str | None = None,
                 called_ae: str | None = None, source_ip: str | None = None):
        self.zone = zone
        self.source = source
        self.outcome = StudyOutcome(study_uid)
        self._seen = landed_sops(zone.store, study_uid)
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._meta = ArrivalMeta(
            source=source, calling_ae=calling_ae, called_ae=called_ae, source_ip=source_ip,
            association_id=f"{source[:24]}-{uuid.uuid4().hex}",
        )
        self._arrival_date = self._meta.received_at.strftime("%Y-%m-%d")
        self._pending: list[tuple[Path, dict]] = []  # written, not yet synced nor in the ledger
        self._opened = False
        self._landed = 0

    def __enter__(self) -> "StudySink":
        return self

    def __exit__(self, *exc) -> None:
        try:
            self.flush()
        finally:
            if self._opened:
                self.zone.store.close_association(self._meta.association_id, self._landed)

    # ---- receiving ----------------------------------------------------------------------

    def add(self, part10, original_path: str | None = None) -> bool:
        """One Part 10 file (a WADO-RS part, an archive file), landed byte for byte as
        received. Returns False when it was not taken (already landed, or not landable:
        counted failed, quarantined). `original_path`: an archive file's path, kept in the ledger."""
        view = memoryview(part10)
        try:
            offset, syntax = part10_layout(view[:65536])
            data = view[offset:]
            ids = dataset_ids(data, syntax)
        except (Unreadable, NotLandable) as exc:
            return self._refuse(lambda fh: fh.write(view), f"unlandable instance: {exc}", None)
        return self._land(ids, data, syntax, lambda fh: fh.write(view), original_path)

    def add_dataset(self, data, transfer_syntax: str, ids: InstanceIds | None = None, sop_class: str | None = None) -> bool:
        """One encoded data set as a C-STORE brought it; we write the File Meta Information
        (PS3.10) before it. `ids` when the caller read them already."""
        try:
            ids = ids or dataset_ids(data, transfer_syntax)
        except NotLandable as exc:
            prefix = part10_prefix(sop_class or "1.2", "1.2", transfer_syntax)
            return self._refuse(lambda fh: (fh.write(prefix), fh.write(data)), f"unlandable instance: {exc}", None)
        prefix = part10_prefix(ids.sop_class_uid or sop_class or "1.2", ids.sop_uid, transfer_syntax, self._meta.calling_ae)
        return self._land(ids, data, transfer_syntax, lambda fh: (fh.write(prefix), fh.write(data)))

    def _land(self, ids: InstanceIds, data, syntax: str, write, original_path: str | None = None) -> bool:
        if ids.study_uid != self.outcome.study_uid:
            return self._refuse(write, "instance of another study than the one requested", ids)
        with self._lock:
            if ids.sop_uid in self._seen:
                self.outcome.skipped += 1
                return False
            self._seen.add(ids.sop_uid)
        try:
            check_complete(data, syntax)
        except Unreadable as exc:
            with self._lock:
                self._seen.discard(ids.sop_uid)
            return self._refuse(write, f"data set does not parse to its end: {exc}", ids)
        sha = dataset_sha256(data)
        final = self.zone.path_for(ids, self._arrival_date, sha)
        self.zone._ensure_dir(final.parent)
        size = final.stat().st_size if final.exists() else _write_atomically(final, write, sync=False)
        values = {**self.zone._ledger_values(ids, final, size, self._meta, self._arrival_date), "sha256": sha, "original_path": original_path}
        with self._lock:
            self._pending.append((final, values))
            self.outcome.bytes += size
            full = len(self._pending) >= FLUSH_EVERY
        if full:
            self.flush()
        return True

    def _refuse(self, write, reason: str, ids: InstanceIds | None) -> bool:
        self.zone.quarantine_refused(write, reason, source=self.source, ids=ids)
        with self._lock:
            self.outcome.failed += 1
            self.outcome.error = self.outcome.error or reason
        return False

    # ---- making it durable --------------------------------------------------------------

    def flush(self) -> None:
        """Sync what was written, then record it in the ledger (in that order)."""
        with self._flush_lock:
            with self._lock:
                batch, self._pending = self._pending, []
            if not batch:
                return
            self.zone.sync_written([p for p, _ in batch])  # data and renames: one syncfs, or file by file
            if not self._opened:
                self.zone.store.open_association(self._meta.association_id, self.source, self._meta.calling_ae,
                                                 self._meta.called_ae, self._meta.source_ip)
                self._opened = True
            self.zone.store.append_ledger_many([v for _, v in batch])
            self._landed += len(batch)
            self.outcome.fetched += len(batch)

