"""Which studies are complete, and how they are grouped into batches (the landing sensor's
logic, free of Dagster).

A study is complete when no instance arrived for the quiet period, or sooner when every
association that brought it has ended. Batches hold up to N complete studies of one arrival
date (the run's partition).

The cursor is the ledger id up to which every row has been read. A ledger id is taken when
its row is inserted and becomes visible at commit, so with several writers (listener
workers, retrievals) a row with a lower id can become visible after one with a higher id.
The cursor therefore stops before a gap in the ids until the row after the gap is older
than LEDGER_GAP_SETTLE (no ledger insert stays uncommitted that long: the gap is then a
rolled-back insert or sequence values PostgreSQL skipped), and the next tick reads on from
there (noting arrivals twice is harmless).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Sequence

from axiom_dagster.config.models import PipelineConfig
from axiom_dagster.store.records import LedgerRow
from axiom_dagster.store.state import Batch, StateStore, _aware

LEDGER_GAP_SETTLE = timedelta(seconds=60)


@dataclass
class TickPlan:
    cursor: int
    new_batches: list[Batch]
    # Batches requested earlier whose run never started; requested again under the same key.
    stale_batches: list[Batch]


def plan_tick(store: StateStore, settings: PipelineConfig, cursor: int, now: datetime) -> TickPlan:
    rows = store.ledger_after(cursor, settings.ledger_rows_per_tick)
    if rows:
        store.note_arrivals(rows)
        cursor = settled_cursor(cursor, rows, now)

    quiet_before = now - timedelta(seconds=settings.quiet_period_seconds)
    limit = settings.batch_max_studies * settings.max_batches_per_tick
    candidates = store.receiving_studies(limit * 4)
    closed = store.studies_with_all_associations_closed([s["study_uid"] for s in candidates])
    complete: dict[str, list[str]] = {}
    for study in candidates:
        if _aware(study["last_arrival_at"]) <= quiet_before or study["study_uid"] in closed:
            complete.setdefault(study["arrival_date"], []).append(study["study_uid"])

    new_batches: list[Batch] = []
    for partition in sorted(complete):
        uids = complete[partition]
        for i in range(0, len(uids), settings.batch_max_studies):
            if len(new_batches) >= settings.max_batches_per_tick:
                break
            new_batches.append(store.create_batch(partition, uids[i : i + settings.batch_max_studies]))

    stale = store.stale_requested_batches(
        now - timedelta(seconds=settings.stale_request_seconds), settings.max_batches_per_tick
    )
    return TickPlan(cursor=cursor, new_batches=new_batches, stale_batches=stale)


def settled_cursor(cursor: int, rows: Sequence[LedgerRow], now: datetime) -> int:
    """The highest id of `rows` (read in id order after `cursor`) below which no id may still
    become visible. A first read (cursor 0) starts at the first row."""
    expected = rows[0].id if cursor == 0 else cursor + 1
    for row in rows:
        if row.id != expected and _aware(row.received_at) > now - LEDGER_GAP_SETTLE:
            return expected - 1
        expected = row.id + 1
    return rows[-1].id
