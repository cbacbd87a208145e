"""Retrieval state per source and study (table source_studies) and what the arrival ledger
already holds: what makes polls and backfills resumable without duplicates."""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Iterable, Sequence

from sqlalchemy import func, select, update

from axiom_dagster.store.schema import ledger, source_studies
from axiom_dagster.store.state import StateStore, _aware, utcnow
from axiom_dagster.store.upsert import upsert_insert

_CHUNK = 500  # UIDs per IN (...) list


def _chunks(items: Sequence[str]):
    for i in range(0, len(items), _CHUNK):
        yield list(items[i : i + _CHUNK])


def ledger_counts(store: StateStore, study_uids: Iterable[str]) -> dict[str, int]:
    """Distinct SOP Instance UIDs in the ledger per study (any source)."""
    uids = sorted(set(study_uids))
    out: dict[str, int] = {}
    with store.engine.connect() as conn:
        for part in _chunks(uids):
            query = (
                select(ledger.c.study_uid, func.count(func.distinct(ledger.c.sop_uid)))
                .where(ledger.c.study_uid.in_(part))
                .group_by(ledger.c.study_uid)
            )
            out.update({u: n for u, n in conn.execute(query)})
    return out


def landed_sops(store: StateStore, study_uid: str) -> set[str]:
    with store.engine.connect() as conn:
        return set(conn.execute(select(ledger.c.sop_uid).where(ledger.c.study_uid == study_uid)).scalars())


def states(store: StateStore, source: str, study_uids: Iterable[str]) -> dict[str, dict]:
    uids = sorted(set(study_uids))
    out: dict[str, dict] = {}
    with store.engine.connect() as conn:
        for part in _chunks(uids):
            query = select(source_studies).where(source_studies.c.source == source, source_studies.c.study_uid.in_(part))
            out.update({r.study_uid: dict(r._mapping) for r in conn.execute(query)})
    return out


def mark(store: StateStore, source: str, studies, status: str, run_id: str | None = None) -> None:
    """Insert or update rows for these StudyRefs with a new status (found/requested/retrieving)."""
    if not studies:
        return
    now = utcnow()
    stmt = upsert_insert(store.engine, source_studies)
    stmt = stmt.on_conflict_do_update(
        index_elements=["source", "study_uid"],
        set_={"status": stmt.excluded.status, "updated_at": stmt.excluded.updated_at,
              "instances_expected": func.coalesce(stmt.excluded.instances_expected, source_studies.c.instances_expected),
              "study_date": func.coalesce(stmt.excluded.study_date, source_studies.c.study_date),
              "run_id": func.coalesce(stmt.excluded.run_id, source_studies.c.run_id)},
    )
    rows = [
        {"source": source, "study_uid": s.study_uid, "study_date": s.study_date, "instances_expected": s.instances,
         "status": status, "instances_fetched": 0, "bytes": 0, "attempts": 0, "run_id": run_id, "updated_at": now}
        for s in studies
    ]
    with store.engine.begin() as conn:
        conn.execute(stmt, rows)


def record_outcome(store: StateStore, source: str, outcome, run_id: str | None = None) -> None:
    """Done when nothing failed (the ledger holds the study), else failed with the reason."""
    status = "done" if outcome.ok else "failed"
    with store.engine.begin() as conn:
        conn.execute(
            update(source_studies)
            .where(source_studies.c.source == source, source_studies.c.study_uid == outcome.study_uid)
            .values(
                status=status, instances_fetched=source_studies.c.instances_fetched + outcome.fetched,
                bytes=source_studies.c.bytes + outcome.bytes, attempts=source_studies.c.attempts + 1,
                error=outcome.error, run_id=run_id, updated_at=utcnow(),
            )
        )


def is_complete(study, ledger_count: int, state: dict | None) -> bool:
    """A study is complete when the ledger holds as many instances as the source reports, or
    (count unknown) when its last retrieval from this source finished without failure."""
    if study.instances is not None:
        return ledger_count >= study.instances > 0
    return bool(state and state["status"] == "done")


def in_flight(state: dict | None, now: datetime, stale_after: timedelta) -> bool:
    """Requested or being retrieved recently: a run for it is queued or running."""
    return bool(
        state and state["status"] in ("requested", "retrieving")
        and _aware(state["updated_at"]) > now - stale_after
    )


def summary(store: StateStore, source: str | None = None) -> list[dict]:
    """Per source and status: studies, first and last StudyDate, instances and bytes fetched."""
    query = select(
        source_studies.c.source, source_studies.c.status, func.count(),
        func.min(source_studies.c.study_date), func.max(source_studies.c.study_date),
        func.sum(source_studies.c.instances_fetched), func.sum(source_studies.c.bytes),
    ).group_by(source_studies.c.source, source_studies.c.status).order_by(source_studies.c.source, source_studies.c.status)
    if source:
        query = query.where(source_studies.c.source == source)
    with store.engine.connect() as conn:
        return [
            {"source": s, "status": st, "studies": n, "first_date": a, "last_date": b,
             "instances": int(i or 0), "bytes": int(by or 0)}
            for s, st, n, a, b, i, by in conn.execute(query)
        ]


def failures(store: StateStore, source: str, limit: int = 20) -> list[dict]:
    query = (
        select(source_studies).where(source_studies.c.source == source, source_studies.c.status == "failed")
        .order_by(source_studies.c.updated_at.desc()).limit(limit)
    )
    with store.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(query)]
