"""Where a retrieved study goes: the landing zone and the arrival ledger, one association per
study retrieval (the landing sensor sees the study complete once it is closed).

Instances of the study already in the ledger are skipped, not landed again: a retrieval that
was killed midway and re-run adds no duplicate rows.
"""
from __future__ import annotations

import threading
import uuid
from io import BytesIO

from axiom_dagster.ingest.arrival import ArrivalMeta
from axiom_dagster.ingest.landing import LandingZone, NotLandable, read_instance_ids
from axiom_dagster.sources.base import StudyOutcome
from axiom_dagster.sources.progress import landed_sops


class StudySink:
    """Lands Part 10 instances of one study; safe to call from several receiver threads."""

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

    def __enter__(self) -> "StudySink":
        m = self._meta
        self.zone.store.open_association(m.association_id, m.source, m.calling_ae, m.called_ae, m.source_ip)
        return self

    def __exit__(self, *exc) -> None:
        self.zone.store.close_association(self._meta.association_id, self.outcome.fetched)

    def add(self, part10: bytes) -> bool:
        """Land one Part 10 file's bytes unchanged. Returns False when it was not landed
        (already there, or not landable: counted as failed with the reason in the outcome)."""
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
        try:
            self.zone.land(ids, lambda fh: fh.write(part10), self._meta)
        except BaseException:
            with self._lock:
                self._seen.discard(ids.sop_uid)
            raise
        with self._lock:
            self.outcome.fetched += 1
            self.outcome.bytes += len(part10)
        return True

    def already_landed(self, sop_uid: str) -> bool:
        return sop_uid in self._seen
