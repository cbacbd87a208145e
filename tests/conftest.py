"""Shared fixtures: state stores on SQLite and on the local PostgreSQL, and a configured
Axiom environment in a temp folder."""
from __future__ import annotations

import logging
import os
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from axiom_dagster.config.models import AxiomConfig
from axiom_dagster.store.state import StateStore
from axiom_dagster.ingest.redaction import install_log_redaction
from tests.helpers import make_config
from tests.realworld.damage import PHI_VALUES

install_log_redaction()  # as every entry point does (cli, definitions, realtime)


class _LogCapture(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_info:
            text += logging.Formatter().formatException(record.exc_info)
        self.lines.append(f"{record.name}: {text}")


@pytest.fixture(scope="session", autouse=True)
def no_phi_in_logs():
    """A log capture over the whole suite (each xdist worker): no line may carry one of the
    test PHI values that tests/realworld/damage.py writes into damaged copies."""
    capture = _LogCapture()
    root = logging.getLogger()
    root.addHandler(capture)
    yield capture
    root.removeHandler(capture)
    leaks = [line for line in capture.lines if any(v in line for v in PHI_VALUES)]
    assert not leaks, f"{len(leaks)} log lines carry test PHI, e.g. {leaks[0][:300]}"


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


@pytest.fixture
def config(tmp_path, store_url) -> AxiomConfig:
    return make_config(tmp_path, store_url)


@pytest.fixture
def orthanc(tmp_path):
    """A started Orthanc on free 127.0.0.1 ports; add modalities with `orthanc.modalities` and
    `orthanc.restart()`."""
    from tests.peers.orthanc import Orthanc, orthanc_available

    if not orthanc_available():
        pytest.skip("Orthanc with the DICOMweb plugin is not installed")
    server = Orthanc(tmp_path / "orthanc").start()
    yield server
    server.stop()


# Folders whose tests start whole peers (Orthanc, Celery workers, emulators, services) or run
# the damaged-file corpus: the full suite only.
SLOW_FOLDERS = ("tests/production/", "tests/realworld/", "tests/sources/", "tests/destinations/")


def pytest_collection_modifyitems(items):
    """The inner loop (`-m "not slow"`) runs the PostgreSQL variants of the state store's
    own tests only, and none of the tests that start a real Orthanc or the peers of
    SLOW_FOLDERS; the full suite runs every test."""
    for item in items:
        spec = getattr(item, "callspec", None)
        if spec is not None and spec.params.get("store_url") == "postgresql" and not item.nodeid.startswith("tests/store/"):
            item.add_marker(pytest.mark.slow)
        elif item.nodeid.startswith(SLOW_FOLDERS) or "orthanc" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)
