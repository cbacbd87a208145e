"""Outcomes per instance and study: deliveries, exceptions, audit rows, and the
study report that joins them (StateStore mixin)."""
from __future__ import annotations

import json
from typing import Sequence

from sqlalchemy import Engine, case, func, insert, select, update

from axiom_dagster.store.records import utcnow
from axiom_dagster.store.schema import audit, batches, deliveries, exceptions
from axiom_dagster.store.upsert import upsert_insert

class OutcomeOps:
    engine: Engine

    # ---- outcomes -----------------------------------------------------------------------

    def record_deliveries(self, rows: Sequence[dict]) -> None:
        """Upsert one row per (ledger id, destination); a re-run counts another attempt.
        A confirmed network delivery stays confirmed (re-delivering it is skipped). Rows may carry
        `attempts` (0 for a network delivery still pending) and `source_path`."""
        if not rows:
            return
        now = utcnow()
        stmt = upsert_insert(self.engine, deliveries)
        # A network copy already confirmed is not sent again; a folder copy rewritten is recorded.
        keep = (deliveries.c.status == "confirmed") & (stmt.excluded.status == "pending")

        def unless_confirmed(column: str):
            return case((keep, deliveries.c[column]), else_=stmt.excluded[column])

        stmt = stmt.on_conflict_do_update(
            index_elements=["ledger_id", "destination"],
            set_={
                **{col: unless_confirmed(col) for col in ("status", "location", "error", "source_path", "status_code", "next_attempt_at", "first_attempt_at")},
                "batch_id": stmt.excluded.batch_id,
                "run_id": stmt.excluded.run_id,
                "updated_at": stmt.excluded.updated_at,
                "attempts": case((keep, deliveries.c.attempts), else_=deliveries.c.attempts + stmt.excluded.attempts),
            },
        )
        defaults = {"source_path": None, "status_code": None, "next_attempt_at": None, "first_attempt_at": None}
        with self.engine.begin() as conn:
            conn.execute(stmt, [{**defaults, "attempts": 1, **r, "updated_at": now} for r in rows])

    def deliveries_for(self, ledger_ids: Sequence[int]) -> list[dict]:
        query = select(deliveries).where(deliveries.c.ledger_id.in_(list(ledger_ids)))
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def record_exceptions(self, rows: Sequence[dict]) -> None:
        """Record failures; an instance failing again at the same stage counts a retry on
        its open exception instead of adding a row."""
        if not rows:
            return
        now = utcnow()
        with self.engine.begin() as conn:
            for r in rows:
                bumped = 0
                if r.get("ledger_id") is not None:
                    bumped = conn.execute(
                        update(exceptions)
                        .where(
                            exceptions.c.ledger_id == r["ledger_id"],
                            exceptions.c.stage == r["stage"],
                            exceptions.c.resolved_at.is_(None),
                        )
                        .values(
                            retries=exceptions.c.retries + 1, reason=r["reason"],
                            run_id=r.get("run_id"), batch_id=r.get("batch_id"),
                        )
                    ).rowcount
                if not bumped:
                    conn.execute(insert(exceptions).values(created_at=now, retries=0, **r))

    def exceptions(self, stage: str | None = None) -> list[dict]:
        query = select(exceptions).order_by(exceptions.c.id)
        if stage:
            query = query.where(exceptions.c.stage == stage)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def record_audit(self, rows: Sequence[dict]) -> None:
        """Append audit rows: actor, action, study_uid, run_id and a `detail` dict (no PHI)."""
        if not rows:
            return
        now = utcnow()
        values = [
            {**r, "at": now, "detail": json.dumps(r["detail"], default=str) if r.get("detail") else None}
            for r in rows
        ]
        with self.engine.begin() as conn:
            conn.execute(insert(audit), values)

    def study_report(self, study_uid: str) -> dict | None:
        """Everything the state store knows about one study: status, deliveries by
        destination, exceptions and audit trail (for the API and support)."""
        study = self.study(study_uid)
        if study is None:
            return None
        with self.engine.connect() as conn:
            delivered = conn.execute(
                select(deliveries.c.destination, deliveries.c.status, func.count(), func.max(deliveries.c.attempts))
                .where(deliveries.c.study_uid == study_uid)
                .group_by(deliveries.c.destination, deliveries.c.status)
            ).all()
            failures = conn.execute(
                select(exceptions).where(exceptions.c.study_uid == study_uid).order_by(exceptions.c.id)
            ).all()
            trail = conn.execute(select(audit).where(audit.c.study_uid == study_uid).order_by(audit.c.id)).all()
            batch = None
            if study.get("batch_id") is not None:
                row = conn.execute(
                    select(batches.c.id, batches.c.status, batches.c.attempts, batches.c.last_failure,
                           batches.c.run_id).where(batches.c.id == study["batch_id"])
                ).first()
                batch = dict(row._mapping) if row else None
        return {
            "study": study,
            "batch": batch,
            "deliveries": [
                {"destination": d, "status": s, "instances": n, "max_attempts": a} for d, s, n, a in delivered
            ],
            "exceptions": [dict(r._mapping) for r in failures],
            "audit": [{**dict(r._mapping), "detail": json.loads(r.detail) if r.detail else None} for r in trail],
        }
