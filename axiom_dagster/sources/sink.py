"""Where a retrieved study goes: the landing zone and the arrival ledger.

A pulled study is still held by its source, so it does not need one fsync per instance as a
pushed (acknowledged) one does: instances are spooled as plain files (in memory when
/dev/shm exists; $AXIOM_SPOOL chooses another folder for very large studies), and when the study's
retrieval ends, LandingZone.import_files lands them in one go (one sync and one ledger
transaction per chunk, one association per study retrieval, closed at once so the landing
sensor sees the study complete). A crash before that leaves nothing in the ledger: the study
is retrieved again.

Instances of the study already in the ledger are skipped, not landed again: a retrieval that
was killed midway and re-run adds no duplicate rows.
"""
from __future__ import annotations

import os
import shutil
import threading
import uuid
from io import BytesIO
from pathlib import Path

from axiom_dagster.ingest.arrival import ArrivalMeta
from axiom_dagster.ingest.importer import iter_files
from axiom_dagster.ingest.landing import LandingZone, NotLandable, read_instance_ids
from axiom_dagster.sources.base import StudyOutcome
from axiom_dagster.sources.progress import landed_sops



def default_spool_root(zone: LandingZone) -> Path:
    """$AXIOM_SPOOL, else /dev/shm (memory: spooled bytes never hit the disk before the
    landing copy), else a hidden folder in the landing zone."""
    if os.environ.get("AXIOM_SPOOL"):
        return Path(os.environ["AXIOM_SPOOL"])
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        return shm / "axiom-spool"
    return zone.root / ".spool"


class StudySink:
    """Collects the Part 10 instances of one study; safe to call from several receiver threads."""

    def __init__(self, zone: LandingZone, source: str, study_uid: str, *, calling_ae: str | None = None,
                 called_ae: str | None = None, source_ip: str | None = None):
        self.zone = zone
        self.outcome = StudyOutcome(study_uid)
        self._seen = landed_sops(zone.store, study_uid)
        self._lock = threading.Lock()
        self._meta = ArrivalMeta(
            source=source, calling_ae=calling_ae, called_ae=called_ae, source_ip=source_ip,
            association_id=f"{source[:24]}-{uuid.uuid4().hex}",
        )
        self.spool = default_spool_root(zone) / self._meta.association_id

    def __enter__(self) -> "StudySink":
        self.spool.mkdir(parents=True, exist_ok=True)
        return self

    def __exit__(self, *exc) -> None:
        try:
            files = list(iter_files(self.spool))
            if files:
                report = self.zone.import_files(files, self._meta)
                self.outcome.fetched = report.landed
                self.outcome.bytes = report.bytes
                if report.rejected:
                    self.outcome.failed += len(report.rejected)
                    self.outcome.error = self.outcome.error or f"landing rejected {len(report.rejected)} instances"
        finally:
            shutil.rmtree(self.spool, ignore_errors=True)

    def add(self, part10: bytes) -> bool:
        """Spool one Part 10 file's bytes unchanged. Returns False when it was not taken
        (already landed, or not landable: counted as failed with the reason in the outcome)."""
        try:
            ids = read_instance_ids(BytesIO(part10))
        except NotLandable as exc:
            with self._lock:
                self.outcome.failed += 1
                self.outcome.error = self.outcome.error or f"unlandable instance: {exc}"
            return False
        with self._lock:
            if ids.sop_uid in self._seen:
                self.outcome.skipped += 1
                return False
            self._seen.add(ids.sop_uid)
        # UIDs were validated by read_instance_ids: digits and dots only.
        (self.spool / f"{ids.sop_uid}.dcm").write_bytes(part10)
        return True
