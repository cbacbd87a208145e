"""What is known about how an instance arrived: the context rules may match on."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone


@dataclass(frozen=True)
class ArrivalMeta:
    """Association or request metadata recorded in the arrival ledger with each instance.

    `source` is the configured name of the listener, poll source or backfill source.
    """

    source: str = "import"
    calling_ae: str | None = None
    called_ae: str | None = None
    source_ip: str | None = None
    association_id: str | None = None
    received_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
