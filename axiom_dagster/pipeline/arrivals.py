"""Which arrival of a SOP Instance UID the pipeline uses.

The same SOP Instance UID arrives more than once (modality re-sends, corrections, damaged
copies); every arrival is kept in the landing zone and the ledger. Per SOP Instance UID of a
batch, `plan_arrivals` orders the candidates by the configured policy (`latest`: the newest
arrival first; `first`: the oldest first, and an instance handled by an earlier batch keeps
its winner). The worker takes the first candidate that reads and validates (the latest
*complete* arrival); the others are recorded as superseded. An arrival whose data set is
byte-identical to another one (same SHA-256) is a duplicate: recorded, nothing else done.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from axiom_dagster.store.records import LedgerRow


@dataclass
class ArrivalPlan:
    # Candidate groups, one per SOP Instance UID, in the order the worker should try them.
    groups: list[list[LedgerRow]] = field(default_factory=list)
    # Decisions already known before processing: (ledger id, sop uid, decision, winner id).
    decided: list[tuple[int, str, str, int | None]] = field(default_factory=list)


def plan_arrivals(
    manifest: Sequence[LedgerRow], earlier: dict[str, tuple[int, str | None]], policy: str = "latest"
) -> ArrivalPlan:
    """`earlier` maps a SOP Instance UID to the (ledger id, sha256) of its winner in an
    earlier batch."""
    by_sop: dict[str, list[LedgerRow]] = {}
    for row in manifest:
        by_sop.setdefault(row.sop_uid, []).append(row)
    plan = ArrivalPlan()
    for sop, rows in by_sop.items():
        if len(rows) == 1 and sop not in earlier:
            plan.groups.append(rows)  # the common case: one arrival, nothing to decide
            continue
        rows = sorted(rows, key=lambda r: r.id, reverse=policy == "latest")
        previous = earlier.get(sop)
        if previous is not None and policy == "first":
            plan.decided += [(r.id, sop, "superseded", previous[0]) for r in rows]
            continue
        kept: dict[str, LedgerRow] = {}
        candidates = []
        for row in rows:
            if previous is not None and row.sha256 and row.sha256 == previous[1]:
                plan.decided.append((row.id, sop, "duplicate", previous[0]))
            elif row.sha256 and row.sha256 in kept:
                plan.decided.append((row.id, sop, "duplicate", kept[row.sha256].id))
            else:
                if row.sha256:
                    kept[row.sha256] = row
                candidates.append(row)
        if candidates:
            plan.groups.append(candidates)
    return plan
