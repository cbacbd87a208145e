"""C-STORE SCU against a real Orthanc: every instance confirmed and found by Orthanc's own
query with identical data sets; Orthanc stopped mid-delivery, retried after restart (once one
instance is confirmed, the others failed by the outage go at once)."""
import pytest
from sqlalchemy import update

from axiom_dagster.destinations.delivery import deliver_destination, make_sender
from axiom_dagster.store.deliveries import DeliveryState
from axiom_dagster.store.schema import deliveries
from axiom_dagster.store.state import utcnow
from tests.destinations.support import FAST_RETRY, assert_identical_in_orthanc, staged
from tests.helpers import free_port

pytestmark = pytest.mark.orthanc


def _pacs(orthanc, **extra) -> dict:
    return {"name": "pacs", "type": "dicom", "host": "127.0.0.1", "port": orthanc.dicom_port,
            "ae_title": orthanc.aet, "retry": FAST_RETRY, **extra}


def test_cstore_confirms_every_instance_identical_in_orthanc(tmp_path, orthanc):
    config, store = staged(tmp_path, [_pacs(orthanc)])
    pending = DeliveryState(store).rows("pacs")
    assert len(pending) == 16 and {r["status"] for r in pending} == {"pending"}

    report = deliver_destination(config, store, "pacs", run_id="deliver-1")
    assert (report.confirmed, report.failed, report.exceptions) == (16, 0, 0), report.summary()
    rows = DeliveryState(store).rows("pacs")
    assert {(r["status"], r["status_code"], r["attempts"]) for r in rows} == {("confirmed", 0, 1)}
    # Orthanc's own query finds every SOP Instance UID, with identical data sets.
    assert orthanc.sop_instance_uids() == {r["sop_uid"] for r in rows}
    assert_identical_in_orthanc(orthanc, rows)
    rollup = DeliveryState(store).study_rollup(rows[0]["study_uid"])
    assert rollup["pacs"]["state"] == "confirmed"

    # Delivering again finds nothing due: confirmed instances are skipped.
    assert deliver_destination(config, store, "pacs").claimed == 0


class StopsPeerAfterFirstStudy:
    """The real sender; Orthanc is stopped once the first study is through (mid-delivery)."""

    def __init__(self, config, orthanc):
        self.inner, self.orthanc, self.calls = make_sender(config, config.destinations[0]), orthanc, 0

    def send(self, items):
        self.calls += 1
        outcomes = self.inner.send(items)
        if self.calls == 1:
            self.orthanc.stop()
        return outcomes


def test_orthanc_stopped_during_delivery_then_back_all_confirmed_none_duplicated(tmp_path, orthanc):
    # Backoff of an hour: only what is due after Orthanc's return is retried by the schedule.
    slow_retry = {"initial_seconds": 3600, "jitter": False}
    config, store = staged(tmp_path, [_pacs(orthanc, batch_size=6, parallel=1, retry=slow_retry)], studies=3, real_world=False)
    down = deliver_destination(config, store, "pacs", sender=StopsPeerAfterFirstStudy(config, orthanc))
    assert (down.confirmed, down.failed, down.exceptions) == (6, 12, 0)
    failed = [r for r in DeliveryState(store).rows("pacs") if r["status"] != "confirmed"]
    assert len(failed) == 12 and {r["status"] for r in failed} == {"failed"}
    assert {r["error"] for r in failed} == {"cannot connect to the peer (connection refused or timed out)"}
    assert all(r["next_attempt_at"] is not None for r in failed)
    assert DeliveryState(store).study_rollup(failed[0]["study_uid"])["pacs"]["state"] == "in_progress"

    orthanc.start()  # same storage: the first study is still there
    assert deliver_destination(config, store, "pacs").claimed == 0  # all wait out their backoff
    first_due = failed[0]["id"]
    with store.engine.begin() as conn:
        conn.execute(update(deliveries).where(deliveries.c.id == first_due).values(next_attempt_at=utcnow()))
    # That one is confirmed: Orthanc is back, so the 11 others failed by the outage go at once.
    back = deliver_destination(config, store, "pacs")
    assert (back.claimed, back.confirmed) == (12, 12), back.summary()
    rows = DeliveryState(store).rows("pacs")
    assert {r["status"] for r in rows} == {"confirmed"} and {r["error"] for r in rows} == {None}
    assert sorted(r["attempts"] for r in rows) == [1] * 6 + [2] * 12
    assert len(orthanc.instances()) == 18 and orthanc.sop_instance_uids() == {r["sop_uid"] for r in rows}


def test_rejected_association_recorded_with_reason(tmp_path, orthanc):
    orthanc.extra["DicomCheckCalledAet"] = True
    orthanc.restart()
    config, store = staged(tmp_path, [_pacs(orthanc, ae_title="NOT_ORTHANC", retry={**FAST_RETRY, "max_age_seconds": 0})],
                           studies=1, series=1, real_world=False)
    report = deliver_destination(config, store, "pacs")
    assert (report.confirmed, report.exceptions) == (0, 3)
    rows = DeliveryState(store).rows("pacs")
    errors = [r["error"] for r in rows]
    assert all(e.startswith("A-ASSOCIATE-RJ: Rejected Permanent, source Service User") for e in errors), errors
    assert all("Called AE title not recognised" in r["error"] for r in rows)
    # Too old to retry (max age 0): each is an open exception naming the destination.
    open_ = DeliveryState(store).list_exceptions(stage="deliver")
    assert len(open_) == 3 and {e["destination"] for e in open_} == {"pacs"}
    assert DeliveryState(store).study_rollup(rows[0]["study_uid"])["pacs"]["state"] == "failed"


def test_query_back_by_cfind(tmp_path, orthanc):
    """verify: true asks Orthanc (C-FIND, IMAGE level) for what it confirmed."""
    orthanc.modalities["AXIOM"] = free_port()  # Orthanc answers C-FIND only from known AEs
    orthanc.restart()
    config, store = staged(tmp_path, [_pacs(orthanc, verify=True)], studies=2, real_world=False)
    report = deliver_destination(config, store, "pacs")
    assert (report.confirmed, report.verified) == (12, 12)
    assert all(r["verified_at"] is not None for r in DeliveryState(store).rows("pacs"))


def test_query_back_refused_leaves_confirmed_unverified(tmp_path, orthanc):
    """A peer that refuses our C-FIND: the C-STORE answers still confirm; not verified."""
    config, store = staged(tmp_path, [_pacs(orthanc, verify=True)], studies=1, real_world=False)
    report = deliver_destination(config, store, "pacs")
    assert (report.confirmed, report.verified) == (6, 0)
