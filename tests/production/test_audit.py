"""The tamper-evident audit log on SQLite and PostgreSQL: admin actions are recorded, routes
are recorded with content hashes, and altering or deleting a row is detected."""
from __future__ import annotations

import hashlib
import subprocess
import sys
import threading

import httpx
import pytest
import sqlalchemy as sa

from axiom_dagster.pipeline.run import run_batch
from axiom_dagster.store import audit
from axiom_dagster.store.apikeys import create_key, revoke_key
from tests.helpers import land_folder, make_config, small_archive, write_config_file


def _raw(store, sql: str, **params) -> None:
    with store.engine.begin() as conn:
        conn.execute(sa.text(sql), params)


def _drop_append_only_triggers(store) -> None:
    """What someone with DDL rights would do before editing the log."""
    if store.engine.dialect.name == "postgresql":
        _raw(store, "ALTER TABLE audit_log DISABLE TRIGGER USER")
        _raw(store, "ALTER TABLE instance_routes DISABLE TRIGGER USER")
    else:
        for table in ("audit_log", "instance_routes"):
            for verb in ("update", "delete"):
                _raw(store, f"DROP TRIGGER {table}_no_{verb}")


def _actions(store) -> list[tuple[str, str, str | None]]:
    return [(e.actor, e.action, e.target) for e in audit.entries(store, limit=1000)]


def test_admin_actions_are_recorded_and_chained(store, tmp_path):
    create_key(store.engine, "sender", "admin", actor="cli:alice")
    assert revoke_key(store.engine, "sender", actor="cli:bob")
    assert not revoke_key(store.engine, "sender", actor="cli:bob")  # nothing revoked: no entry
    config = tmp_path / "axiom.yaml"
    config.write_text("landing: {path: a}\n")
    assert audit.record_config_file(store, "cli:alice", config).action == "config.loaded"
    assert audit.record_config_file(store, "dagster", config) is None  # unchanged: nothing new
    config.write_text("landing: {path: b}\n")
    changed = audit.record_config_file(store, "dagster", config)
    audit.record_audit(store, "apikey:ops", "exception.requeued", "exception:7", {"retries": 1})
    audit.record_audit(store, "apikey:ops", "exception.resolved", "exception:7", {"note_chars": 12})

    assert _actions(store) == [
        ("cli:alice", "apikey.created", "sender"),
        ("cli:bob", "apikey.revoked", "sender"),
        ("cli:alice", "config.loaded", str(config.resolve())),
        ("dagster", "config.changed", str(config.resolve())),
        ("apikey:ops", "exception.requeued", "exception:7"),
        ("apikey:ops", "exception.resolved", "exception:7"),
    ]
    assert changed.details["sha256"] == hashlib.sha256(b"landing: {path: b}\n").hexdigest()
    assert changed.details["previous_sha256"] == hashlib.sha256(b"landing: {path: a}\n").hexdigest()
    key_entry = audit.entries(store, action="apikey.created")[0]
    assert key_entry.details["role"] == "admin" and "secret" not in str(key_entry.details)
    report = audit.verify(store)
    assert report.ok, report.problems
    assert report.entries == report.head_seq == 6
    # Queryable by plain SQL, too.
    with store.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM audit_log WHERE action LIKE 'apikey.%'")).scalar() == 2


def test_update_and_delete_are_refused_then_detected(store):
    for i in range(5):
        audit.record_audit(store, "cli:alice", "exception.resolved", f"exception:{i}", {"n": i})
    head = audit.verify(store)
    expect = f"{head.head_seq}:{head.head_hash}"

    # The application has no update path, and the database refuses one through raw SQL.
    with pytest.raises(sa.exc.DBAPIError, match="append-only"):
        _raw(store, "UPDATE audit_log SET actor = 'cli:mallory' WHERE seq = 2")
    with pytest.raises(sa.exc.DBAPIError, match="append-only"):
        _raw(store, "DELETE FROM audit_log WHERE seq = 2")
    assert audit.verify(store).ok

    _drop_append_only_triggers(store)
    _raw(store, "UPDATE audit_log SET actor = 'cli:mallory' WHERE seq = 2")
    report = audit.verify(store)
    assert not report.ok
    assert report.problems == ["entry 2: content does not match its hash (altered)"]

    _raw(store, "DELETE FROM audit_log WHERE seq = 4")
    problems = audit.verify(store).problems
    assert "entries 4..4 are missing (deleted)" in problems
    assert "entry 5: prev_hash does not match the hash of the entry before it" in problems

    # Deleting the tail and moving the head back leaves a consistent-looking chain: only a
    # head kept elsewhere catches it.
    _raw(store, "DELETE FROM audit_log WHERE seq >= 3")
    with store.engine.begin() as conn:
        last = conn.execute(sa.text("SELECT hash FROM audit_log WHERE seq = 2")).scalar()
        conn.execute(sa.text("UPDATE audit_head SET seq = 2, hash = :h"), {"h": last})
    assert audit.verify(store).problems == ["entry 2: content does not match its hash (altered)"]
    assert f"the expected head {expect} is not in the log (rewritten or truncated)" in audit.verify(store, expect=expect).problems


def test_concurrent_writers_form_one_chain(store):
    def write(worker: int) -> None:
        for i in range(15):
            audit.record_audit(store, f"worker:{worker}", "exception.requeued", f"exception:{worker}-{i}")

    threads = [threading.Thread(target=write, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    report = audit.verify(store)
    assert report.ok, report.problems
    assert report.entries == 60


def test_pipeline_records_where_each_instance_went(tmp_path, store_url):
    config = make_config(tmp_path, store_url)
    from axiom_dagster.store.state import StateStore

    store = StateStore(config.state_store_url)
    store.migrate()
    small_archive(tmp_path / "in", studies=2, series=1, instances=3)
    land_folder(config, store, tmp_path / "in")
    rows = store.ledger_after(0, 100)
    store.note_arrivals(rows)
    batch = store.create_batch(rows[0].arrival_date, sorted({r.study_uid for r in rows}))
    run_batch(config, store, batch.id, "run-audit-1")

    (entry,) = audit.entries(store, action="instances.routed")
    assert entry.actor == "study_pipeline" and entry.details["routes"] == len(rows) == 6
    for row in rows:
        (route,) = audit.routes_of(store, row.sop_uid)
        assert route["destination"] == config.destinations[0].name
        with open(route["location"], "rb") as f:
            assert route["content_sha256"] == hashlib.file_digest(f, "sha256").hexdigest()
        assert route["run_id"] == "run-audit-1" and route["batch_id"] == batch.id
    assert audit.verify(store).ok

    # A route rewritten to point elsewhere is caught through the group's digest.
    _drop_append_only_triggers(store)
    _raw(store, "UPDATE instance_routes SET destination = 'elsewhere' WHERE sop_uid = :u", u=rows[0].sop_uid)
    assert audit.verify(store).problems == [f"entry {entry.seq}: its instance_routes rows were altered, added or deleted"]
    store.dispose()


def test_cli_verify_and_api(tmp_path, store_url):
    """`axiom audit verify` exits 1 on a tampered log; the API lists entries for admins only."""
    from tests.realtime.support import InProcessService, make_config as realtime_config

    path, config = realtime_config(tmp_path, state_store={"url": store_url})
    service = InProcessService(config)
    try:
        store = service.service.store
        admin = create_key(store.engine, "auditor", "admin", actor="cli:alice")[1]
        viewer = create_key(store.engine, "viewer", "user", actor="cli:alice")[1]
        base = f"http://127.0.0.1:{config.http.port}"
        listed = httpx.get(f"{base}/api/v1/audit", params={"action": "apikey.created"}, headers={"X-API-Key": admin})
        assert listed.status_code == 200
        assert [e["target"] for e in listed.json()["items"]] == ["auditor", "viewer"]
        assert httpx.get(f"{base}/api/v1/audit", headers={"X-API-Key": viewer}).status_code == 403
        assert httpx.get(f"{base}/api/v1/audit/verify", headers={"X-API-Key": admin}).json()["ok"] is True

        cli = [sys.executable, "-m", "axiom_dagster.cli", "--config", str(path), "audit", "verify"]
        ok = subprocess.run(cli, capture_output=True, text=True)
        assert ok.returncode == 0 and "2 entries" in ok.stdout and "OK" in ok.stdout
        _drop_append_only_triggers(store)
        _raw(store, "UPDATE audit_log SET details = '{\"role\":\"superuser\"}' WHERE seq = 2")
        bad = subprocess.run(cli, capture_output=True, text=True)
        assert bad.returncode == 1 and "entry 2: content does not match its hash" in bad.stderr
        verified = httpx.get(f"{base}/api/v1/audit/verify", headers={"X-API-Key": admin}).json()
        assert verified["ok"] is False and verified["problems"]
    finally:
        service.stop()
