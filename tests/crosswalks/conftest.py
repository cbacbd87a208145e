"""Real source databases for crosswalk tests: a fresh MariaDB database and a fresh
PostgreSQL database per test (both on 127.0.0.1), dropped afterwards."""
from __future__ import annotations

import os
import uuid

import pytest
import sqlalchemy as sa

MARIADB_ADMIN_URL = os.environ.get("AXIOM_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/")


@pytest.fixture
def mariadb_url():
    engine = sa.create_engine(MARIADB_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect():
            pass
    except Exception:
        if os.environ.get("CI"):
            pytest.fail("MariaDB on 127.0.0.1:3306 is required in CI")
        pytest.skip("MariaDB on 127.0.0.1:3306 is not reachable")
    name = f"axiom_xw_{uuid.uuid4().hex[:12]}"
    with engine.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE `{name}`")
    yield MARIADB_ADMIN_URL.rstrip("/") + f"/{name}"
    with engine.connect() as conn:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS `{name}`")
    engine.dispose()


@pytest.fixture(params=["mariadb", "postgresql"])
def source_db_url(request):
    return request.getfixturevalue("mariadb_url" if request.param == "mariadb" else "postgres_url")


def create_patients(url: str, rows: list[tuple[str, int, str | None]]) -> None:
    """A real table `patients(mrn, site, research_id, arm)`; arm is derived from site."""
    engine = sa.create_engine(url)
    md = sa.MetaData()
    t = sa.Table(
        "patients", md,
        sa.Column("mrn", sa.String(32)), sa.Column("site", sa.Integer),
        sa.Column("research_id", sa.String(32)), sa.Column("arm", sa.String(8)),
    )
    md.drop_all(engine)
    md.create_all(engine)
    with engine.begin() as conn:
        if rows:
            conn.execute(t.insert(), [dict(mrn=m, site=s, research_id=r, arm=f"A{s}") for m, s, r in rows])
    engine.dispose()
