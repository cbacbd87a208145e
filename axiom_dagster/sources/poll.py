"""One poll tick's plan (free of Dagster): query the source's StudyDate window, keep the
studies not yet complete in the ledger and not already requested, mark them requested.

The cursor is a time-window high-water mark: `hwm` is the last day a full sweep covered; a
sweep queries [hwm - lookback_days, today] one page per tick (offset in the cursor), so a tick
does bounded work and a restart resumes where the last tick stopped. Studies dated before the
window are the backfill's job.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta

from axiom_dagster.config.sources import PollConfig
from axiom_dagster.sources import progress
from axiom_dagster.sources.base import Source, StudyRef
from axiom_dagster.store.state import StateStore

# A request older than this whose study is still not complete is requested again.
STALE_REQUEST = timedelta(hours=1)
MAX_ATTEMPTS = 5


@dataclass
class PollCursor:
    hwm: str | None = None  # YYYY-MM-DD
    offset: int = 0
    sweep_to: str | None = None  # the "today" of the sweep in progress

    @classmethod
    def parse(cls, text: str | None) -> "PollCursor":
        return cls(**json.loads(text)) if text else cls()

    def dump(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


@dataclass
class PollPlan:
    cursor: PollCursor
    window: tuple[str, str]
    found: int = 0
    skipped: int = 0
    requested: list[StudyRef] = field(default_factory=list)


def plan_poll(store: StateStore, source: Source, settings: PollConfig, cursor: PollCursor, now: datetime) -> PollPlan:
    """Raises SourceError when the source cannot be queried (the cursor is then unchanged)."""
    today = now.date()
    sweep_to = date.fromisoformat(cursor.sweep_to) if cursor.sweep_to else today
    start = (date.fromisoformat(cursor.hwm) if cursor.hwm else today) - timedelta(days=settings.lookback_days)
    page = source.find_studies(start, sweep_to, offset=cursor.offset, limit=settings.page_size)
    uids = [s.study_uid for s in page.studies]
    counts = progress.ledger_counts(store, uids)
    states = progress.states(store, source.name, uids)
    new = [
        s for s in page.studies
        if not progress.is_complete(s, counts.get(s.study_uid, 0), states.get(s.study_uid))
        and not progress.in_flight(states.get(s.study_uid), now, STALE_REQUEST)
        and (states.get(s.study_uid) or {}).get("attempts", 0) < MAX_ATTEMPTS
    ]
    requested = new[: settings.max_studies_per_tick]
    progress.mark(store, source.name, requested, "requested")
    if len(new) > len(requested):
        nxt = PollCursor(cursor.hwm, cursor.offset, sweep_to.isoformat())  # same page again
    elif page.more:
        nxt = PollCursor(cursor.hwm, cursor.offset + len(page.studies), sweep_to.isoformat())
    else:
        nxt = PollCursor(sweep_to.isoformat(), 0, None)  # sweep done: the window moves on
    return PollPlan(nxt, (start.isoformat(), sweep_to.isoformat()), len(page.studies),
                    len(page.studies) - len(new), requested)
