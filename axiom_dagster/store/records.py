"""Plain records read from the state store, shared with worker processes, and the
conversions from table rows (stored times are UTC)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone


@dataclass(frozen=True)
class LedgerRow:
    id: int
    received_at: datetime
    arrival_date: str
    study_uid: str
    series_uid: str
    sop_uid: str
    sop_class_uid: str | None
    transfer_syntax_uid: str | None
    path: str
    size: int
    source: str
    calling_ae: str | None
    called_ae: str | None
    source_ip: str | None
    association_id: str | None
    sha256: str | None = None
    original_path: str | None = None


@dataclass(frozen=True)
class Batch:
    id: int
    partition: str
    status: str
    studies: int
    instances: int
    attempts: int = 1


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _aware(value: datetime | None) -> datetime | None:
    """SQLite hands datetimes back naive; every stored time is UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value


def _ledger_row(r) -> LedgerRow:
    m = dict(r._mapping)
    m["received_at"] = _aware(m["received_at"])
    return LedgerRow(**m)


def _batch(r) -> Batch:
    return Batch(r.id, r.partition, r.status, r.studies, r.instances, r.attempts)
