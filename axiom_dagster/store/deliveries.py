"""Delivery state per instance × destination: claim what is due, record outcomes, roll up per
study, and the exception queue (list, requeue, resolve) with who and when.

States: pending → sent (claimed by one delivery call) → confirmed | failed. A failed row with
`next_attempt_at` is retried when due; one without it has an open exception. A `sent` row
older than the lease is due again: the process that claimed it died between send and record,
so the instance is sent at most once more and the destination's duplicate answer confirms it.
"""
from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Sequence

from sqlalchemy import and_, bindparam, func, insert, or_, select, update

from axiom_dagster.store.audit import append_routes
from axiom_dagster.store.schema import audit, deliveries, exceptions
from axiom_dagster.store.state import StateStore, _aware, utcnow

DELIVER_STAGE = "deliver"


@dataclass(frozen=True)
class DueDelivery:
    id: int
    ledger_id: int
    destination: str
    study_uid: str
    sop_uid: str
    source_path: str
    attempts: int  # including the one just claimed
    first_attempt_at: datetime
    batch_id: int | None


@dataclass(frozen=True)
class Outcome:
    """What the destination answered for one instance (reasons name problems, never values)."""

    delivery_id: int
    confirmed: bool
    status_code: int | None = None
    reason: str | None = None
    location: str | None = None
    verified: bool = False
    # SHA-256 of what the destination received (after any transcoding), for the audit log.
    content_sha256: str | None = None


def delivered_routes(outcomes: Sequence[Outcome], items: dict[int, DueDelivery]) -> list[dict]:
    """Audit routes of the confirmed outcomes that say what was sent (content hash)."""
    return [
        {"ledger_id": i.ledger_id, "study_uid": i.study_uid, "sop_uid": i.sop_uid, "destination": i.destination,
         "location": o.location, "content_sha256": o.content_sha256, "batch_id": i.batch_id}
        for o in outcomes if o.confirmed and o.content_sha256 and (i := items[o.delivery_id])
    ]


class DeliveryState:
    def __init__(self, store: StateStore):
        self.store = store
        self.engine = store.engine

    # ---- claiming -----------------------------------------------------------------------

    def _due(self, now: datetime, lease_seconds: float):
        lease_cutoff = now - timedelta(seconds=lease_seconds)
        c = deliveries.c
        return or_(
            c.status == "pending",
            and_(c.status == "failed", c.next_attempt_at.is_not(None), c.next_attempt_at <= now),
            and_(c.status == "sent", c.updated_at < lease_cutoff),
        )

    def due_counts(self, now: datetime, lease_seconds: float) -> dict[str, int]:
        query = select(deliveries.c.destination, func.count()).where(self._due(now, lease_seconds)).group_by(deliveries.c.destination)
        with self.engine.connect() as conn:
            return dict(conn.execute(query).all())

    def claim_due(self, destination: str, limit: int, lease_seconds: float, now: datetime | None = None) -> list[DueDelivery]:
        """Mark up to `limit` due rows of one destination `sent` (whole studies first, in
        ledger order) and return them; a concurrent claimer cannot take the same rows."""
        now = now or utcnow()
        token = f"claim-{uuid.uuid4().hex}"
        c = deliveries.c
        with self.engine.begin() as conn:
            ids = conn.execute(
                select(c.id).where(c.destination == destination, self._due(now, lease_seconds))
                .order_by(c.study_uid, c.ledger_id).limit(limit)
            ).scalars().all()
            if not ids:
                return []
            conn.execute(
                update(deliveries)
                .where(c.id.in_(ids), self._due(now, lease_seconds))
                .values(
                    status="sent", run_id=token, updated_at=now, attempts=c.attempts + 1,
                    first_attempt_at=func.coalesce(c.first_attempt_at, now),
                )
            )
            rows = conn.execute(
                select(deliveries).where(c.id.in_(ids), c.run_id == token).order_by(c.study_uid, c.ledger_id)
            ).all()
        return [
            DueDelivery(r.id, r.ledger_id, r.destination, r.study_uid, r.sop_uid, r.source_path,
                        r.attempts, _aware(r.first_attempt_at), r.batch_id)
            for r in rows
        ]

    def set_run(self, delivery_ids: Sequence[int], run_id: str | None) -> None:
        if run_id and delivery_ids:
            with self.engine.begin() as conn:
                conn.execute(update(deliveries).where(deliveries.c.id.in_(list(delivery_ids))).values(run_id=run_id))

    # ---- outcomes -----------------------------------------------------------------------

    def record(self, outcomes: Sequence[Outcome], retry_at: dict[int, datetime | None], items: dict[int, DueDelivery], run_id: str | None) -> int:
        """Store outcomes. A failure with a retry time waits; one without (too old) becomes an
        open exception. Confirmed instances get their audit route (what was sent, where) in
        the same transaction. Returns the number of new exceptions."""
        now = utcnow()
        new_exceptions = 0
        c = deliveries.c
        confirmed = [
            {"_id": o.delivery_id, "_code": o.status_code, "_location": o.location, "_verified": now if o.verified else None}
            for o in outcomes if o.confirmed
        ]
        failed = [
            {"_id": o.delivery_id, "_code": o.status_code, "_reason": o.reason, "_next": retry_at.get(o.delivery_id)}
            for o in outcomes if not o.confirmed
        ]
        with self.engine.begin() as conn:
            if confirmed:
                conn.execute(
                    update(deliveries).where(c.id == bindparam("_id")).values(
                        status="confirmed", status_code=bindparam("_code"), error=None, location=bindparam("_location"),
                        confirmed_at=now, next_attempt_at=None, updated_at=now, verified_at=bindparam("_verified"), run_id=run_id,
                    ),
                    confirmed,
                )
            if failed:
                conn.execute(
                    update(deliveries).where(c.id == bindparam("_id")).values(
                        status="failed", status_code=bindparam("_code"), error=bindparam("_reason"),
                        next_attempt_at=bindparam("_next"), updated_at=now, run_id=run_id,
                    ),
                    failed,
                )
            routes = delivered_routes(outcomes, items)
            if routes:
                append_routes(conn, routes, actor="delivery", run_id=run_id, target=f"destination:{routes[0]['destination']}")
            for o in outcomes:
                if o.confirmed or retry_at.get(o.delivery_id) is not None:
                    continue
                item = items[o.delivery_id]
                conn.execute(insert(exceptions).values(
                    created_at=now, stage=DELIVER_STAGE, reason=o.reason or "delivery failed",
                    ledger_id=item.ledger_id, study_uid=item.study_uid, sop_uid=item.sop_uid,
                    quarantine_path=item.source_path, batch_id=item.batch_id, run_id=run_id,
                    retries=max(item.attempts - 1, 0), destination=item.destination,
                ))
                new_exceptions += 1
        return new_exceptions

    def expedite(self, destination: str, reasons: Sequence[str], failed_before: datetime, now: datetime | None = None) -> int:
        """Make due now the failed rows of `destination` waiting out a backoff after a failure
        (recorded before `failed_before`) whose reason starts with one of `reasons`."""
        now = now or utcnow()
        c = deliveries.c
        with self.engine.begin() as conn:
            return conn.execute(
                update(deliveries)
                .where(c.destination == destination, c.status == "failed", c.next_attempt_at > now,
                       c.updated_at < failed_before,
                       or_(*[c.error.startswith(r, autoescape=True) for r in reasons]))
                .values(next_attempt_at=now)
            ).rowcount

    # ---- reading ------------------------------------------------------------------------

    def rows(self, destination: str | None = None, study_uid: str | None = None) -> list[dict]:
        query = select(deliveries).order_by(deliveries.c.id)
        if destination:
            query = query.where(deliveries.c.destination == destination)
        if study_uid:
            query = query.where(deliveries.c.study_uid == study_uid)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def study_rollup(self, study_uid: str) -> dict[str, dict]:
        """Per destination: counts by status and one state: confirmed (all), failed (any
        instance waiting for manual action), else in_progress."""
        query = (
            select(deliveries.c.destination, deliveries.c.status, (deliveries.c.next_attempt_at.is_(None)).label("final"), func.count())
            .where(deliveries.c.study_uid == study_uid)
            .group_by(deliveries.c.destination, deliveries.c.status, "final")
        )
        out: dict[str, dict] = {}
        with self.engine.connect() as conn:
            for dest, status, final, n in conn.execute(query):
                entry = out.setdefault(dest, {"counts": {}, "manual": 0})
                entry["counts"][status] = entry["counts"].get(status, 0) + n
                if status == "failed" and final:
                    entry["manual"] += n
        for entry in out.values():
            counts = entry.pop("counts")
            manual = entry.pop("manual")
            entry.update(counts)
            total = sum(counts.values())
            entry["state"] = (
                "confirmed" if counts.get("confirmed", 0) == total
                else "failed" if manual else "in_progress"
            )
        return out

    # ---- exception queue ----------------------------------------------------------------

    def list_exceptions(self, open_only: bool = True, stage: str | None = None, limit: int = 500) -> list[dict]:
        query = select(exceptions).order_by(exceptions.c.id).limit(limit)
        if open_only:
            query = query.where(exceptions.c.resolved_at.is_(None))
        if stage:
            query = query.where(exceptions.c.stage == stage)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def exception(self, exception_id: int) -> dict | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(exceptions).where(exceptions.c.id == exception_id)).first()
        return dict(row._mapping) if row else None

    def requeue(self, exception_id: int, actor: str, destination: str | None = None) -> dict:
        """Deliver the exception's instance again, to its destination or to another one; the
        exception is resolved as requeued, by `actor`, now."""
        exc = self._open_delivery_exception(exception_id)
        target = destination or exc["destination"]
        now = utcnow()
        c = deliveries.c
        with self.engine.begin() as conn:
            source = conn.execute(
                select(deliveries).where(c.ledger_id == exc["ledger_id"], c.destination == exc["destination"])
            ).first()
            if source is None:
                raise LookupError(f"exception {exception_id} has no delivery row")
            fresh = dict(status="pending", next_attempt_at=None, first_attempt_at=None, error=None,
                         status_code=None, updated_at=now, source_path=source.source_path)
            existing = conn.execute(select(c.id, c.status).where(c.ledger_id == exc["ledger_id"], c.destination == target)).first()
            if existing is None:
                conn.execute(insert(deliveries).values(
                    ledger_id=source.ledger_id, destination=target, study_uid=source.study_uid,
                    sop_uid=source.sop_uid, attempts=0, batch_id=source.batch_id, **fresh))
            elif existing.status != "confirmed":
                conn.execute(update(deliveries).where(c.id == existing.id).values(**fresh))
            resolution = f"requeued to {target}"
            self._resolve(conn, exception_id, actor, resolution, now, exc["study_uid"])
        return {"id": exception_id, "resolution": resolution, "resolved_by": actor, "resolved_at": now}

    def resolve(self, exception_id: int, actor: str, note: str = "resolved") -> dict:
        exc = self.exception(exception_id)
        if exc is None:
            raise LookupError(f"no exception {exception_id}")
        if exc["resolved_at"] is not None:
            raise ValueError(f"exception {exception_id} is already resolved")
        now = utcnow()
        with self.engine.begin() as conn:
            self._resolve(conn, exception_id, actor, note, now, exc["study_uid"])
        return {"id": exception_id, "resolution": note, "resolved_by": actor, "resolved_at": now}

    def _open_delivery_exception(self, exception_id: int) -> dict:
        exc = self.exception(exception_id)
        if exc is None:
            raise LookupError(f"no exception {exception_id}")
        if exc["resolved_at"] is not None:
            raise ValueError(f"exception {exception_id} is already resolved")
        if exc["stage"] != DELIVER_STAGE or not exc["destination"]:
            raise ValueError(f"exception {exception_id} is a {exc['stage']} failure; only delivery failures can be requeued")
        return exc

    @staticmethod
    def _resolve(conn, exception_id: int, actor: str, note: str, now: datetime, study_uid: str | None) -> None:
        conn.execute(update(exceptions).where(exceptions.c.id == exception_id).values(
            resolved_at=now, resolved_by=actor[:128], resolution=note))
        conn.execute(insert(audit).values(
            at=now, actor=actor[:64], action="exception_resolved", study_uid=study_uid,
            detail=json.dumps({"exception_id": exception_id, "resolution": note[:200]}),
        ))
