"""Per-study status and the batches that process studies (StateStore mixin)."""
from __future__ import annotations

import os
import socket
from datetime import datetime, timedelta
from typing import Iterable, Sequence

from sqlalchemy import Engine, func, insert, select, update

from axiom_dagster.store.records import Batch, LedgerRow, _aware, _batch, _ledger_row, utcnow
from axiom_dagster.store.schema import batch_items, batches, deliveries, exceptions, ledger, studies

class StudyBatchOps:
    engine: Engine

    # ---- studies ------------------------------------------------------------------------

    def note_arrivals(self, rows: Sequence[LedgerRow]) -> None:
        """Fold ledger rows into per-study status: a study with new arrivals is receiving."""
        by_study: dict[str, list[LedgerRow]] = {}
        for row in rows:
            by_study.setdefault(row.study_uid, []).append(row)
        now = utcnow()
        with self.engine.begin() as conn:
            existing = {
                r.study_uid: r
                for r in conn.execute(select(studies).where(studies.c.study_uid.in_(list(by_study))))
            }
            for uid, group in by_study.items():
                old = existing.get(uid)
                if old is not None:
                    # Rows at or below the study's high-water mark were counted already (a
                    # sensor whose cursor was reset re-reads the ledger harmlessly).
                    group = [r for r in group if r.id > old.last_ledger_id]
                    if not group:
                        continue
                first = min(r.received_at for r in group)
                last = max(r.received_at for r in group)
                top = max(r.id for r in group)
                if old is None:
                    conn.execute(
                        insert(studies).values(
                            study_uid=uid, status="receiving", first_arrival_at=first,
                            last_arrival_at=last, arrival_date=group[0].arrival_date,
                            instances_received=len(group), last_ledger_id=top, updated_at=now,
                        )
                    )
                else:
                    conn.execute(
                        update(studies)
                        .where(studies.c.study_uid == uid)
                        .values(
                            status="receiving",
                            last_arrival_at=max(_aware(old.last_arrival_at), last),
                            arrival_date=max(old.arrival_date, group[-1].arrival_date),
                            instances_received=old.instances_received + len(group),
                            last_ledger_id=max(old.last_ledger_id, top),
                            updated_at=now,
                        )
                    )

    def receiving_studies(self, limit: int) -> list[dict]:
        query = (
            select(studies)
            .where(studies.c.status == "receiving")
            .order_by(studies.c.last_arrival_at)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def study(self, study_uid: str) -> dict | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(studies).where(studies.c.study_uid == study_uid)).first()
            return dict(row._mapping) if row else None

    def study_counts(self) -> dict[str, int]:
        query = select(studies.c.status, func.count()).group_by(studies.c.status)
        with self.engine.connect() as conn:
            return {status: n for status, n in conn.execute(query)}

    def status_summary(self) -> dict[str, dict]:
        """Counts for `axiom status`: studies and batches by status, open exceptions by stage,
        deliveries by destination and status."""
        def grouped(*columns, where=None):
            query = select(*columns, func.count()).group_by(*columns)
            if where is not None:
                query = query.where(where)
            with self.engine.connect() as conn:
                return {" / ".join(map(str, row[:-1])): row[-1] for row in conn.execute(query)}

        return {
            "studies": grouped(studies.c.status),
            "batches": grouped(batches.c.status),
            "open exceptions": grouped(exceptions.c.stage, where=exceptions.c.resolved_at.is_(None)),
            "deliveries": grouped(deliveries.c.destination, deliveries.c.status),
        }

    # ---- batches ------------------------------------------------------------------------

    def create_batch(self, partition: str, study_uids: Sequence[str]) -> Batch:
        """Make a manifest of every not-yet-batched ledger row of these studies."""
        now = utcnow()
        with self.engine.begin() as conn:
            already = select(batch_items.c.ledger_id)
            rows = conn.execute(
                select(ledger.c.id, ledger.c.study_uid).where(
                    ledger.c.study_uid.in_(list(study_uids)), ledger.c.id.not_in(already)
                )
            ).all()
            batch_id = conn.execute(
                insert(batches).values(
                    partition=partition, status="requested", requested_at=now,
                    studies=len(study_uids), instances=len(rows),
                )
            ).inserted_primary_key[0]
            if rows:
                conn.execute(
                    insert(batch_items),
                    [{"batch_id": batch_id, "ledger_id": i, "study_uid": s} for i, s in rows],
                )
            conn.execute(
                update(studies)
                .where(studies.c.study_uid.in_(list(study_uids)))
                .values(status="queued", batch_id=batch_id, partition=partition, updated_at=now)
            )
        return Batch(batch_id, partition, "requested", len(study_uids), len(rows))

    def stale_requested_batches(self, older_than: datetime, limit: int) -> list[Batch]:
        query = (
            select(batches)
            .where(batches.c.status == "requested", batches.c.requested_at < older_than)
            .order_by(batches.c.id)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [_batch(r) for r in conn.execute(query)]

    def batch(self, batch_id: int) -> Batch | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(batches).where(batches.c.id == batch_id)).first()
            return _batch(row) if row else None

    def batch_manifest(self, batch_id: int) -> list[LedgerRow]:
        query = (
            select(ledger)
            .join(batch_items, batch_items.c.ledger_id == ledger.c.id)
            .where(batch_items.c.batch_id == batch_id)
            .order_by(ledger.c.id)
        )
        with self.engine.connect() as conn:
            return [_ledger_row(r) for r in conn.execute(query)]

    def start_batch(self, batch_id: int, run_id: str) -> None:
        """The batch is running in this process (its pid and host let the sensor notice a
        run process that died without a word, e.g. after kill -9)."""
        now = utcnow()
        with self.engine.begin() as conn:
            conn.execute(
                update(batches)
                .where(batches.c.id == batch_id)
                .values(status="running", run_id=run_id, started_at=now,
                        run_pid=os.getpid(), run_host=socket.gethostname())
            )
            conn.execute(
                update(studies)
                .where(studies.c.batch_id == batch_id, studies.c.status == "queued")
                .values(status="processing", run_id=run_id, updated_at=now)
            )

    def finish_batch(self, batch_id: int, failed_studies: Iterable[str]) -> None:
        """Mark the batch done; its studies done, except those named as failed."""
        failed = list(set(failed_studies))
        now = utcnow()
        with self.engine.begin() as conn:
            conn.execute(
                update(batches)
                .where(batches.c.id == batch_id)
                .values(status="done", finished_at=now)
            )
            mine = (studies.c.batch_id == batch_id) & (studies.c.status == "processing")
            if failed:
                conn.execute(
                    update(studies)
                    .where(mine, studies.c.study_uid.in_(failed))
                    .values(status="failed", updated_at=now)
                )
            conn.execute(update(studies).where(mine).values(status="done", updated_at=now))

    def fail_batch(self, batch_id: int, reason: str = "run failed", max_attempts: int = 1,
                   retry_delay_seconds: float = 0.0) -> str:
        """The batch's run failed, was canceled or died. With attempts left the batch waits
        (retry_wait) until next_attempt_at, its studies queued again; else it is failed for
        good, and so are its unfinished studies. Returns the new status."""
        now = utcnow()
        with self.engine.begin() as conn:
            attempts = conn.execute(select(batches.c.attempts).where(batches.c.id == batch_id)).scalar_one()
            final = attempts >= max_attempts
            conn.execute(
                update(batches).where(batches.c.id == batch_id).values(
                    status="failed" if final else "retry_wait", finished_at=now, last_failure=reason[:500],
                    next_attempt_at=None if final else now + timedelta(seconds=retry_delay_seconds),
                )
            )
            conn.execute(
                update(studies)
                .where(studies.c.batch_id == batch_id, studies.c.status.in_(["queued", "processing"]))
                .values(status="failed" if final else "queued", updated_at=now)
            )
        return "failed" if final else "retry_wait"

    def unfinished_batches(self, limit: int) -> list[dict]:
        """Batches requested or running (oldest first): the sensor checks their runs."""
        query = (
            select(batches).where(batches.c.status.in_(["requested", "running"]))
            .order_by(batches.c.id).limit(limit)
        )
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def failed_batches(self, limit: int = 20) -> list[dict]:
        """Batches failed for good (every attempt used), newest first."""
        query = (
            select(batches.c.id, batches.c.partition, batches.c.attempts, batches.c.last_failure)
            .where(batches.c.status == "failed").order_by(batches.c.id.desc()).limit(limit)
        )
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def request_retries(self, now: datetime, limit: int) -> list[Batch]:
        """Batches in retry_wait whose time has come, requested again (attempts + 1)."""
        with self.engine.begin() as conn:
            due = conn.execute(
                select(batches.c.id).where(batches.c.status == "retry_wait", batches.c.next_attempt_at <= now)
                .order_by(batches.c.id).limit(limit)
            ).scalars().all()
            for batch_id in due:
                conn.execute(
                    update(batches).where(batches.c.id == batch_id).values(
                        status="requested", attempts=batches.c.attempts + 1, requested_at=now,
                        next_attempt_at=None, run_id=None, run_pid=None, run_host=None,
                    )
                )
            rows = conn.execute(select(batches).where(batches.c.id.in_(due)).order_by(batches.c.id)).all() if due else []
        return [_batch(r) for r in rows]
