"""INSERT ... ON CONFLICT for the state store's two databases."""
from __future__ import annotations

from sqlalchemy import Engine, Table
from sqlalchemy.dialects import postgresql, sqlite


def upsert_insert(engine: Engine, table: Table):
    """An INSERT into `table` in the engine's dialect: it has on_conflict_do_update and
    on_conflict_do_nothing (PostgreSQL and SQLite share that API)."""
    dialect = postgresql if engine.dialect.name == "postgresql" else sqlite
    return dialect.insert(table)
