"""Dagster's PostgreSQL storage with its connections kept open: a small pool per process.

dagster-postgres opens a new connection for every read and write of its run, event-log and
schedule storages (SQLAlchemy's NullPool, so that idle processes hold none). A pipeline step
writes dozens of events, each then a new PostgreSQL backend (fork, authentication): profiled
in bench/celery.py, connecting took ~15 % of a Celery worker's time in a step, and PostgreSQL
spent its CPU starting backends. Here each of the three storages keeps a pool of at most
POOL_SIZE + MAX_OVERFLOW connections per process; a connection is checked before use (a
database restart costs one reconnect, not a failed write) and replaced after POOL_RECYCLE
seconds. A process forked with connections open (the pipeline's worker pool) leaves them to
its parent and opens its own if it ever needs one.

Used by config/dagster-postgres.yaml (`storage: custom: ...`), with the same `postgres_db` /
`postgres_url` settings as dagster-postgres's own `storage: postgres:` block.
"""
from __future__ import annotations

import os
import weakref

from dagster_postgres import DagsterPostgresStorage
from dagster_postgres.utils import create_pg_engine, get_token_provider_from_config, pg_url_from_config

POOL_SIZE = 2  # connections kept open per storage and process (a step and its log handler)
MAX_OVERFLOW = 8  # more while several threads (sensors, the webserver) need one at once
POOL_RECYCLE = 600  # seconds; below common idle-connection limits of proxies and poolers

_engines: weakref.WeakSet = weakref.WeakSet()


def _forget_parent_connections() -> None:
    for engine in list(_engines):
        engine.dispose(close=False)  # the parent's sockets stay the parent's


os.register_at_fork(after_in_child=_forget_parent_connections)


class PooledPostgresStorage(DagsterPostgresStorage):
    def __init__(self, postgres_url: str, should_autocreate_tables: bool = True, inst_data=None, token_provider=None):
        super().__init__(postgres_url, should_autocreate_tables, inst_data, token_provider)
        for storage in (self._run_storage, self._event_log_storage, self._schedule_storage):
            unpooled, storage._engine = storage._engine, create_pg_engine(
                postgres_url, token_provider, isolation_level="AUTOCOMMIT", pool_size=POOL_SIZE,
                max_overflow=MAX_OVERFLOW, pool_recycle=POOL_RECYCLE, pool_pre_ping=True,
            )
            _engines.add(storage._engine)
            unpooled.dispose()

    @classmethod
    def from_config_value(cls, inst_data, config_value):
        return cls(
            pg_url_from_config(config_value), config_value.get("should_autocreate_tables", True), inst_data,
            get_token_provider_from_config(config_value),
        )
