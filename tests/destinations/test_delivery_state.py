"""Delivery state on SQLite and PostgreSQL: claiming is exclusive, outcomes and retry times
are stored, a re-run of the pipeline never resets a confirmed delivery, the study rollup and
the exception queue; backoff with jitter stays under its ceiling; destination models."""
import random
from datetime import datetime, timedelta, timezone

import pytest

from axiom_dagster.config.destinations import RetryPolicy
from axiom_dagster.config.models import ConfigError, parse_config
from axiom_dagster.destinations.retry import backoff_seconds, next_attempt
from axiom_dagster.store.deliveries import DeliveryState, Outcome


def _ledger(store, n=3, study="1.2.3"):
    now = datetime.now(timezone.utc)
    return store.append_ledger_group([
        dict(received_at=now, arrival_date="2024-01-01", study_uid=study, series_uid="1.2.3.1", sop_uid=f"1.2.3.1.{i}",
             path=f"/landing/{i}.dcm", size=1, source="t") for i in range(n)
    ])


def _pending(store, ids, destination="pacs", study="1.2.3"):
    store.record_deliveries([
        dict(ledger_id=i, destination=destination, study_uid=study, sop_uid=f"1.2.3.1.{k}", status="pending",
             location=None, error=None, batch_id=1, run_id="r", source_path=f"/outbox/{k}.dcm", attempts=0)
        for k, i in enumerate(ids)
    ])


def test_claim_record_retry_and_rollup(store):
    ids = _ledger(store)
    _pending(store, ids)
    state = DeliveryState(store)
    claimed = state.claim_due("pacs", 10, lease_seconds=600)
    assert [c.attempts for c in claimed] == [1, 1, 1]
    assert state.claim_due("pacs", 10, lease_seconds=600) == []  # claimed rows are not due twice
    later = datetime.now(timezone.utc) + timedelta(minutes=5)
    items = {c.id: c for c in claimed}
    opened = state.record([
        Outcome(claimed[0].id, True, status_code=0, location="PACS"),
        Outcome(claimed[1].id, False, status_code=0xA700, reason="C-STORE failed with status 0xA700"),
        Outcome(claimed[2].id, False, status_code=None, reason="cannot connect"),
    ], {claimed[1].id: later, claimed[2].id: None}, items, "run-2")
    assert opened == 1
    rows = {r["id"]: r for r in state.rows("pacs")}
    assert (rows[claimed[0].id]["status"], rows[claimed[0].id]["status_code"]) == ("confirmed", 0)
    assert (rows[claimed[1].id]["status"], rows[claimed[1].id]["status_code"]) == ("failed", 0xA700)
    assert rows[claimed[2].id]["next_attempt_at"] is None
    assert state.study_rollup("1.2.3") == {"pacs": {"confirmed": 1, "failed": 2, "state": "failed"}}
    assert state.due_counts(datetime.now(timezone.utc), 600) == {}
    assert state.due_counts(later + timedelta(seconds=1), 600) == {"pacs": 1}

    # The pipeline re-run records the copies as pending again: the confirmed one stays confirmed.
    _pending(store, ids)
    rows = {r["ledger_id"]: r for r in state.rows("pacs")}
    assert rows[ids[0]]["status"] == "confirmed" and rows[ids[1]]["status"] == "pending"

    (exc,) = state.list_exceptions(stage="deliver")
    assert (exc["destination"], exc["ledger_id"], exc["reason"]) == ("pacs", ids[2], "cannot connect")
    state.requeue(exc["id"], "tester", destination="web")
    assert [r["status"] for r in state.rows("web")] == ["pending"]
    with pytest.raises(ValueError, match="already resolved"):
        state.resolve(exc["id"], "tester")


def test_stale_sent_claim_is_due_again(store):
    ids = _ledger(store, 1)
    _pending(store, ids)
    state = DeliveryState(store)
    (first,) = state.claim_due("pacs", 10, lease_seconds=600)
    assert state.claim_due("pacs", 10, lease_seconds=600) == []
    (again,) = state.claim_due("pacs", 10, lease_seconds=600, now=datetime.now(timezone.utc) + timedelta(seconds=601))
    assert (again.id, again.attempts) == (first.id, 2)


def test_backoff_grows_with_jitter_and_gives_up_after_max_age():
    policy = RetryPolicy(initial_seconds=10, multiplier=2, max_seconds=60, max_age_seconds=3600)
    rng = random.Random(1)
    waits = [backoff_seconds(policy, n, rng) for n in range(1, 8) for _ in range(50)]
    assert all(0 <= w <= 60 for w in waits) and max(waits) > 40
    assert backoff_seconds(RetryPolicy(initial_seconds=10, jitter=False), 3) == 40
    now = datetime.now(timezone.utc)
    assert next_attempt(policy, 1, now, now) is not None
    assert next_attempt(policy, 9, now - timedelta(seconds=3599), now) is None


def test_default_schedule_outlasts_a_ten_minute_outage():
    """With the defaults, an instance failing every attempt for 10 minutes (retried as often
    as its backoff allows) is always rescheduled, never given up."""
    policy, rng = RetryPolicy(), random.Random(7)
    first = datetime(2026, 1, 1, tzinfo=timezone.utc)
    for _ in range(200):
        now, attempts = first, 1
        while now - first < timedelta(minutes=10):
            later = next_attempt(policy, attempts, first, now)
            assert later is not None
            now, attempts = max(later, now + timedelta(seconds=1)), attempts + 1
    assert policy.max_age_seconds >= 24 * 3600


def test_expedite_only_rows_failed_earlier_by_connection_failures(store):
    ids = _ledger(store, n=4)
    _pending(store, ids)
    state = DeliveryState(store)
    items = {i.id: i for i in state.claim_due("pacs", 10, 600)}
    later = datetime.now(timezone.utc) + timedelta(hours=1)
    reasons = ["cannot connect to the peer (connection refused or timed out)", "C-STORE failed with status 0xA700",
               "no C-STORE response (association aborted or timed out)", "cannot connect to the peer (refused)"]
    outcomes = [Outcome(i, False, reason=r) for i, r in zip(items, reasons)]
    state.record(outcomes, {i: later for i in items}, items, "r")
    connection = ("cannot connect to the peer", "no C-STORE response")
    # Failed after the call started (the peer may be going down): left alone.
    assert state.expedite("pacs", connection, failed_before=datetime.now(timezone.utc) - timedelta(minutes=1)) == 0
    assert state.expedite("other", connection, failed_before=datetime.now(timezone.utc) + timedelta(seconds=1)) == 0
    assert state.expedite("pacs", connection, failed_before=datetime.now(timezone.utc) + timedelta(seconds=1)) == 3
    due = {i.id for i in state.claim_due("pacs", 10, 600)}
    assert due == {o.delivery_id for o in outcomes if not o.reason.startswith("C-STORE failed")}


def test_destination_models_validate_with_file_and_line():
    config = parse_config(
        "destinations:\n"
        "  - {name: pacs, type: dicom, host: 10.0.0.5, port: 104, ae_title: PACS}\n"
        "  - {name: web, type: dicomweb, url: 'https://pacs/dicom-web', auth: {type: bearer, token: abc}}\n"
        "  - {name: lake, type: s3, bucket: b, path_template: '{StudyInstanceUID}/{SOPInstanceUID}.dcm'}\n"
    )
    assert [d.type for d in config.destinations] == ["dicom", "dicomweb", "s3"]
    with pytest.raises(ConfigError) as err:
        parse_config("destinations:\n  - name: pacs\n    type: dicom\n    host: h\n    port: 70000\n    ae_title: PACS\n", source="a.yaml")
    assert "a.yaml:5: field destinations[0].port" in str(err.value)
    with pytest.raises(ConfigError, match="needs username, password"):
        parse_config("destinations:\n  - {name: w, type: dicomweb, url: 'http://x', auth: {type: basic}}\n")
    with pytest.raises(ConfigError, match="must contain {SOPInstanceUID}"):
        parse_config("destinations:\n  - {name: g, type: gcs, bucket: b, path_template: '{StudyInstanceUID}.dcm'}\n")
    with pytest.raises(ConfigError, match="cert_file and key_file go together"):
        parse_config("destinations:\n  - {name: p, type: dicom, host: h, port: 1, ae_title: P, tls: {cert_file: /c.pem}}\n")
