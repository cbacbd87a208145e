"""The state store: arrival ledger, study status, batches, deliveries, exceptions, audit.

SQLAlchemy Core over SQLite (default) or PostgreSQL; one URL chooses. `migrate()` brings the
schema to the newest Alembic revision and is safe to call on every start.
"""
from __future__ import annotations

import json
import os
import socket
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterable, Sequence

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import Engine, case, create_engine, event, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from axiom_dagster.store.records import Batch, LedgerRow
from axiom_dagster.store.schema import (
    arrival_decisions,
    associations,
    audit,
    batch_items,
    batches,
    deliveries,
    exceptions,
    ledger,
    studies,
)

MIGRATIONS = Path(__file__).parent / "migrations"
_LEDGER_INSERT = insert(ledger)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _aware(value: datetime | None) -> datetime | None:
    """SQLite hands datetimes back naive; every stored time is UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value


class StateStore:
    def __init__(self, url: str, *, echo: bool = False):
        self.url = url
        self.engine: Engine = _make_engine(url, echo)

    # ---- schema -------------------------------------------------------------------------

    def migrate(self) -> None:
        cfg = AlembicConfig()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        with self.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    def schema_revision(self) -> str | None:
        with self.engine.connect() as conn:
            return conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()

    def dispose(self) -> None:
        self.engine.dispose()

    # ---- ledger -------------------------------------------------------------------------

    def append_ledger(self, **values) -> int:
        """Append one arrival; returns its ledger id (monotonic)."""
        return self.append_ledger_group([values])[0]

    def append_ledger_group(self, rows: Sequence[dict]) -> list[int]:
        """Append rows in one transaction (one commit); returns their ledger ids in order."""
        # A constant statement with the values as parameters compiles once (cached); building
        # insert().values(**values) per call costs ~0.25 ms of cache-key generation.
        with self.engine.begin() as conn:
            return [conn.execute(_LEDGER_INSERT, values).inserted_primary_key[0] for values in rows]

    def append_ledger_many(self, rows: Sequence[dict]) -> None:
        with self.engine.begin() as conn:
            conn.execute(insert(ledger), list(rows))

    def ledger_after(self, cursor: int, limit: int) -> list[LedgerRow]:
        query = select(ledger).where(ledger.c.id > cursor).order_by(ledger.c.id).limit(limit)
        with self.engine.connect() as conn:
            return [_ledger_row(r) for r in conn.execute(query)]

    def ledger_count(self) -> int:
        with self.engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(ledger)).scalar_one()

    # ---- associations -------------------------------------------------------------------

    def open_association(self, assoc_id: str, source: str, calling_ae, called_ae, source_ip) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                insert(associations).values(
                    id=assoc_id, source=source, calling_ae=calling_ae, called_ae=called_ae,
                    source_ip=source_ip, started_at=utcnow(), instances=0,
                )
            )

    def close_association(self, assoc_id: str, instances: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                update(associations)
                .where(associations.c.id == assoc_id)
                .values(ended_at=utcnow(), instances=instances)
            )

    def open_associations(self, ids: Iterable[str]) -> set[str]:
        ids = [i for i in set(ids) if i]
        if not ids:
            return set()
        query = select(associations.c.id).where(
            associations.c.id.in_(ids), associations.c.ended_at.is_(None)
        )
        with self.engine.connect() as conn:
            return set(conn.execute(query).scalars())

    def studies_with_all_associations_closed(self, study_uids: Sequence[str]) -> set[str]:
        """Studies whose every ledger row came on an association that has ended."""
        if not study_uids:
            return set()
        still_open = case(
            (associations.c.id.is_(None) | associations.c.ended_at.is_(None), 1), else_=0
        )
        query = (
            select(ledger.c.study_uid)
            .select_from(ledger.outerjoin(associations, associations.c.id == ledger.c.association_id))
            .where(ledger.c.study_uid.in_(list(study_uids)))
            .group_by(ledger.c.study_uid)
            .having(func.sum(still_open) == 0)
        )
        with self.engine.connect() as conn:
            return set(conn.execute(query).scalars())

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

    # ---- arrivals of one SOP Instance UID ----------------------------------------------

    def earlier_winners(self, sop_uids: Sequence[str], batch_id: int) -> dict[str, tuple[int, str | None]]:
        """Per SOP Instance UID, the (ledger id, sha256) of its latest winning arrival in a
        batch other than `batch_id`."""
        out: dict[str, tuple[int, str | None]] = {}
        uids = list(set(sop_uids))
        with self.engine.connect() as conn:
            for i in range(0, len(uids), 500):
                query = (
                    select(arrival_decisions.c.sop_uid, ledger.c.id, ledger.c.sha256)
                    .join(ledger, ledger.c.id == arrival_decisions.c.ledger_id)
                    .where(
                        arrival_decisions.c.sop_uid.in_(uids[i:i + 500]),
                        arrival_decisions.c.decision == "winner",
                        arrival_decisions.c.batch_id != batch_id,
                    )
                    .order_by(ledger.c.id)
                )
                for sop, ledger_id, sha in conn.execute(query):
                    out[sop] = (ledger_id, sha)
        return out

    def record_arrival_decisions(self, rows: Sequence[dict]) -> None:
        """Upsert one decision per arrival (winner / superseded / duplicate / failed)."""
        if not rows:
            return
        stmt = _upsert_statement(self.engine, arrival_decisions)
        stmt = stmt.on_conflict_do_update(
            index_elements=["ledger_id"],
            set_={c: stmt.excluded[c] for c in ("decision", "winner_ledger_id", "batch_id", "run_id", "decided_at")},
        )
        now = utcnow()
        with self.engine.begin() as conn:
            conn.execute(stmt, [{**r, "decided_at": now} for r in rows])

    def arrival_decisions(self, sop_uid: str | None = None) -> list[dict]:
        return self._rows(arrival_decisions, arrival_decisions.c.ledger_id, arrival_decisions.c.sop_uid, sop_uid)

    # ---- outcomes -----------------------------------------------------------------------

    def record_deliveries(self, rows: Sequence[dict]) -> None:
        """Upsert one row per (ledger id, destination); a re-run counts another attempt."""
        if not rows:
            return
        now = utcnow()
        stmt = _upsert_statement(self.engine, deliveries)
        stmt = stmt.on_conflict_do_update(
            index_elements=["ledger_id", "destination"],
            set_={
                "status": stmt.excluded.status,
                "location": stmt.excluded.location,
                "error": stmt.excluded.error,
                "batch_id": stmt.excluded.batch_id,
                "run_id": stmt.excluded.run_id,
                "updated_at": stmt.excluded.updated_at,
                "attempts": deliveries.c.attempts + 1,
            },
        )
        with self.engine.begin() as conn:
            conn.execute(stmt, [{**r, "updated_at": now, "attempts": 1} for r in rows])

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
        return self._rows(exceptions, exceptions.c.id, exceptions.c.stage, stage)

    def _rows(self, table, order, column=None, value=None) -> list[dict]:
        """Every row of `table` (where `column` == `value` when a value is given), in order."""
        query = select(table).order_by(order)
        if value:
            query = query.where(column == value)
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
            with self.engine.connect() as conn:
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


def _make_engine(url: str, echo: bool) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, echo=echo, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):
            cur = dbapi_conn.cursor()
            # WAL lets the sensor read while a receiver writes; FULL makes a commit durable
            # before an instance is acknowledged.
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    return create_engine(url, echo=echo, pool_pre_ping=True)


def _upsert_statement(engine: Engine, table):
    dialect = postgresql if engine.dialect.name == "postgresql" else sqlite
    return dialect.insert(table)


def _ledger_row(r) -> LedgerRow:
    m = dict(r._mapping)
    m["received_at"] = _aware(m["received_at"])
    return LedgerRow(**m)


def _batch(r) -> Batch:
    return Batch(r.id, r.partition, r.status, r.studies, r.instances, r.attempts)
