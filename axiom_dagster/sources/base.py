"""What every source offers: study-level search over a StudyDate range, whole-study retrieval
into a sink, and a connectivity check."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Protocol

from axiom_dagster.dicom.uids import InvalidUID, require_uid


class SourceError(RuntimeError):
    """The source could not be queried or reached; the message names the protocol error
    (HTTP status, DIMSE status, connection failure), never element values."""


@dataclass(frozen=True)
class StudyRef:
    """One study as a source reported it."""

    study_uid: str
    study_date: str | None = None  # YYYYMMDD
    instances: int | None = None  # NumberOfStudyRelatedInstances, when reported
    sop_classes: tuple[str, ...] = ()  # SOPClassesInStudy, when reported


@dataclass
class StudyOutcome:
    """What retrieving one study did. `error` names the failure (status codes, no values)."""

    study_uid: str
    fetched: int = 0
    skipped: int = 0  # already in the ledger for this study
    failed: int = 0
    bytes: int = 0
    error: str | None = None
    statuses: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None and self.failed == 0


@dataclass(frozen=True)
class Page:
    studies: list[StudyRef]
    # True when the source may hold more results after this page (offset paging goes on).
    more: bool


class Source(Protocol):
    name: str

    def echo(self) -> str: ...

    def find_studies(self, first: date, last: date, *, offset: int = 0, limit: int | None = None,
                     extra: dict[str, str] | None = None) -> Page: ...

    def retrieve_study(self, study: StudyRef, sink) -> StudyOutcome: ...

    def close(self) -> None: ...


def dicom_date_range(first: date, last: date) -> str:
    a, b = first.strftime("%Y%m%d"), last.strftime("%Y%m%d")
    return a if a == b else f"{a}-{b}"


def valid_study_uid(value) -> str | None:
    """A reported StudyInstanceUID, or None when it is missing or malformed (such a result is
    skipped: it cannot become a path or a retrieval key)."""
    try:
        return require_uid(str(value).strip("\0 "), "StudyInstanceUID") if value else None
    except InvalidUID:
        return None


def as_int(value) -> int | None:
    try:
        return int(str(value).strip()) if value not in (None, "") else None
    except ValueError:
        return None
