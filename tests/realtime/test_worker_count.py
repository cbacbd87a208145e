"""`axiom realtime` without --workers: two listener processes per core on PostgreSQL, one on SQLite."""
import os

from realtime.workers import default_worker_count


def test_default_worker_count_follows_the_state_store(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 4, 5}, raising=False)
    assert default_worker_count("postgresql+psycopg2://u@db/axiom") == 12
    assert default_worker_count("sqlite:///var/state.db") == 1
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 3)
    assert default_worker_count("postgresql+psycopg2://u@db/axiom") == 6
    monkeypatch.setattr(os, "cpu_count", lambda: None)
    assert default_worker_count("postgresql+psycopg2://u@db/axiom") == 2
