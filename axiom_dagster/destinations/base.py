"""What every sender shares: the failure that stops a whole delivery call, and the interface
(`send` one study's instances, answer per instance; `verify` by query-back)."""
from __future__ import annotations

from typing import Protocol

from axiom_dagster.store.deliveries import DueDelivery, Outcome


# Failure reasons (their beginnings) that say nothing about the instance, only that the
# destination or the connection to it was down. Once the destination confirms instances again,
# rows failed for these reasons are retried at once instead of waiting out their backoff.
CONNECTION_FAILURES = (
    "cannot connect to the peer",  # C-STORE: refused or timed out
    "A-ASSOCIATE-RJ",  # e.g. too many associations; permanent ones never confirm anything
    "no C-STORE response",  # aborted or timed out mid-association
    "association ended before this instance was sent",
    "C-STORE could not be sent",
    "STOW-RS: cannot reach the server",
    "GCS: cannot reach the service",
    "S3: cannot reach the endpoint",
)


class DestinationUnreachable(Exception):
    """No connection or association: every instance of the call fails with this reason, and
    the rest of the run's instances for this destination fail fast with it too."""

    def __init__(self, reason: str, status_code: int | None = None):
        super().__init__(reason)
        self.reason = reason
        self.status_code = status_code


class Sender(Protocol):
    def send(self, items: list[DueDelivery]) -> list[Outcome]: ...

    def verify(self, study_uid: str, sop_uids: set[str]) -> set[str]: ...
