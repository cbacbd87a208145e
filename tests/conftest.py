"""Shared fixtures: state stores on SQLite and on the local PostgreSQL, and a configured
Axiom environment in a temp folder."""
from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from axiom_dagster.config import AxiomConfig, FilesystemDestination, PipelineConfig
from axiom_dagster.state import StateStore

PG_ADMIN_URL = os.environ.get("AXIOM_TEST_PG_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")


def _postgres_available() -> bool:
    try:
        engine = sa.create_engine(PG_ADMIN_URL, connect_args={"connect_timeout": 3})
        with engine.connect():
            pass
        engine.dispose()
        return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def postgres_admin():
    if not _postgres_available():
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL on 127.0.0.1:5432 is required in CI")
        pytest.skip("PostgreSQL on 127.0.0.1:5432 is not reachable")
    engine = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    yield engine
    engine.dispose()


@pytest.fixture
def postgres_url(postgres_admin):
    """A fresh PostgreSQL database for one test, dropped afterwards."""
    name = f"axiom_test_{uuid.uuid4().hex[:12]}"
    with postgres_admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    with postgres_admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def store(store_url):
    s = StateStore(store_url)
    s.migrate()
    yield s
    s.dispose()


def make_config(root: Path, store_url: str, **pipeline) -> AxiomConfig:
    settings = {"quiet_period_seconds": 0, "workers": 2, **pipeline}
    return AxiomConfig(
        landing={"path": root / "landing", "quarantine_path": root / "quarantine"},
        state_store={"url": store_url},
        catalog={"path": str(root / "catalog")},
        pipeline=PipelineConfig(**settings),
        destinations=[FilesystemDestination(name="archive", path=root / "routed")],
        base_dir=root,
    )


@pytest.fixture
def config(tmp_path, store_url) -> AxiomConfig:
    return make_config(tmp_path, store_url)


def write_config_file(config: AxiomConfig, path: Path) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    return path
