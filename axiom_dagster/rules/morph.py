"""The morph step's extension point: what each destination receives of an instance.

The pipeline calls `Morpher.morph` once per instance. The rule engine implements this
protocol; `PassThrough` is what runs when no ruleset is configured.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, Sequence

from pydicom import Dataset

from axiom_dagster.ingest.arrival import ArrivalMeta


@dataclass
class DestinationCopy:
    """The dataset one destination receives; `changed` is False when it is the input as is."""

    destination: str
    dataset: Dataset
    changed: bool = False


@dataclass
class MorphOutcome:
    copies: list[DestinationCopy] = field(default_factory=list)
    # Set when a rule decides the instance must not go anywhere (e.g. crosswalk miss).
    quarantine_reason: str | None = None
    # Names of the rules that matched, for the audit log.
    matched_rules: list[str] = field(default_factory=list)
    # Lookup misses (kind, name, key text, reason) for the missing-keys report.
    lookup_misses: list[tuple[str, str, str, str]] = field(default_factory=list)


class Morpher(Protocol):
    """A morpher may declare `copies_unchanged = True` when every copy it returns is the input
    unchanged: the pipeline then hands it a data set built from the raw header (attributes
    readable, never re-encoded) instead of pydicom's full reading of the file."""

    def morph(
        self, ds: Dataset, meta: ArrivalMeta, destinations: Sequence[str]
    ) -> MorphOutcome: ...


class PassThrough:
    """Every destination receives the instance unchanged."""

    copies_unchanged = True

    def morph(self, ds: Dataset, meta: ArrivalMeta, destinations: Sequence[str]) -> MorphOutcome:
        return MorphOutcome(copies=[DestinationCopy(name, ds) for name in destinations])
