"""The arrival ledger and the associations that brought its rows (StateStore mixin)."""
from __future__ import annotations

import functools
from typing import Iterable, Sequence

from sqlalchemy import Connection, Engine, case, func, insert, select, update
from sqlalchemy.exc import DBAPIError

from axiom_dagster.store.records import LedgerRow, _ledger_row, utcnow
from axiom_dagster.store.schema import associations, ledger

_LEDGER_COLUMNS = [c.name for c in ledger.columns if c.name != "id"]
# Placeholders per DBAPI paramstyle (psycopg2: format/pyformat, sqlite3: qmark).
_PLACEHOLDER = {"format": "%s", "pyformat": "%s", "qmark": "?"}
ROWS_PER_INSERT = 500  # 17 parameters each: well below SQLite's limit of 32,766 per statement


class LedgerOps:
    engine: Engine

    # ---- ledger -------------------------------------------------------------------------

    def append_ledger(self, **values) -> int:
        """Append one arrival; returns its ledger id (monotonic)."""
        return self.append_ledger_group([values])[0]

    def append_ledger_group(self, rows: Sequence[dict], connection: Connection | None = None) -> list[int]:
        """Append rows in one transaction; returns their ledger ids in order.
        `connection`: the caller's own, in AUTOCOMMIT (the group commit keeps one: no pool
        checkout and ping per group); at most ROWS_PER_INSERT rows, which go in one
        statement that is its own transaction: one round trip, where BEGIN, INSERT and
        COMMIT took three.

        A group commit's rows go in one statement, as plain SQL to the driver: per-row
        executes cost a round trip each, and SQLAlchemy's statement machinery about 0.2 ms
        of CPU per row, which the receivers pay per instance. One INSERT ... VALUES assigns
        the ids in the order of its rows (PostgreSQL's sequence and SQLite's rowid both
        advance row by row), so the returned ids, sorted, are the rows' ids in order."""
        if not rows:
            return []
        if connection is not None:
            if len(rows) > ROWS_PER_INSERT:
                raise ValueError(f"at most {ROWS_PER_INSERT} rows per statement")
            return _insert_ledger_rows(connection, rows)
        with self.engine.begin() as conn:
            return _insert_ledger_rows(conn, rows)

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


def _insert_ledger_rows(conn: Connection, rows: Sequence[dict]) -> list[int]:
    mark = _PLACEHOLDER.get(conn.dialect.paramstyle)
    if mark is None:  # another driver: SQLAlchemy's own statement, row by row
        insert_one = insert(ledger)
        return [conn.execute(insert_one, values).inserted_primary_key[0] for values in rows]
    convert = _bind_processors(conn.dialect)
    ids = []
    # The driver's own cursor: SQLAlchemy's result set-up for one INSERT ... RETURNING took
    # a sixth of a receiver's Python time per group (profiled under 4 associations).
    cursor = conn.connection.cursor()
    try:
        for start in range(0, len(rows), ROWS_PER_INSERT):
            chunk = rows[start:start + ROWS_PER_INSERT]
            params = tuple(f(values.get(name)) if f else values.get(name) for values in chunk for name, f in convert)
            sql = _insert_sql(len(chunk), mark)
            try:
                cursor.execute(sql, params)
                ids += sorted(row[0] for row in cursor.fetchall())
            except conn.dialect.loaded_dbapi.Error as exc:  # as SQLAlchemy would raise it
                raise DBAPIError.instance(sql, params, exc, conn.dialect.loaded_dbapi.Error) from exc
    finally:
        cursor.close()
    if len(ids) != len(rows):
        raise RuntimeError(f"ledger insert returned {len(ids)} ids for {len(rows)} rows")
    return ids


@functools.lru_cache(maxsize=64)
def _insert_sql(rows: int, mark: str) -> str:
    one = "(" + ", ".join([mark] * len(_LEDGER_COLUMNS)) + ")"
    return f"INSERT INTO ledger ({', '.join(_LEDGER_COLUMNS)}) VALUES {', '.join([one] * rows)} RETURNING id"


@functools.lru_cache(maxsize=8)
def _bind_processors(dialect) -> tuple:
    """(column, the dialect's conversion of a Python value or None) per ledger column, as
    SQLAlchemy's own statements would bind them (e.g. datetimes as SQLite stores them)."""
    return tuple((name, ledger.c[name].type.dialect_impl(dialect).bind_processor(dialect)) for name in _LEDGER_COLUMNS)
