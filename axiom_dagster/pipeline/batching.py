"""Which studies are complete, and how they are grouped into batches (the landing sensor's
logic, free of Dagster).

A study is complete when no instance arrived for the quiet period, or sooner when every
association that brought it has ended. Batches hold up to N complete studies of one arrival
date (the run's partition).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from axiom_dagster.config.models import PipelineConfig
from axiom_dagster.store.state import Batch, StateStore, _aware


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
        cursor = rows[-1].id

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
