"""The state store: arrival ledger, study status, batches, deliveries, exceptions, audit.

SQLAlchemy Core over SQLite (default) or PostgreSQL; one URL chooses. `migrate()` brings the
schema to the newest Alembic revision and is safe to call on every start.
"""
from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import Engine, create_engine, event

# Batch, LedgerRow, utcnow and _aware are imported from here by the pipeline and adapters.
from axiom_dagster.store.records import Batch, LedgerRow, _aware, utcnow  # noqa: F401
from axiom_dagster.store.ledger_ops import LedgerOps
from axiom_dagster.store.arrival_ops import ArrivalDecisionOps
from axiom_dagster.store.outcome_ops import OutcomeOps
from axiom_dagster.store.study_ops import StudyBatchOps

MIGRATIONS = Path(__file__).parent / "migrations"


class StateStore(LedgerOps, StudyBatchOps, OutcomeOps, ArrivalDecisionOps):
    """One URL's state store; the operations live in the mixins by table group."""

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
