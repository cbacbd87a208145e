"""Plain records read from the state store, shared with worker processes."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


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
