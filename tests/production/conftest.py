"""Fixtures for the production tests."""
from __future__ import annotations

import fcntl
import tempfile
from pathlib import Path

import pytest


@pytest.fixture
def rabbitmq_queue():
    """Exclusive use of RabbitMQ's `dagster` queue for one test: every Celery test purges it
    and starts workers that take any task in it, so two at once (pytest-xdist workers) would
    run each other's steps. An flock held for the test's duration serializes them across
    processes (xdist's loadgroup does not group them with pytest 9.2 / xdist 3.8)."""
    with open(Path(tempfile.gettempdir()) / "axiom-tests-rabbitmq.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
