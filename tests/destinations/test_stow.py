"""STOW-RS against a real Orthanc (DICOMweb plugin), with query-back and HTTP auth; the
Google Healthcare API destination against Orthanc behind a token-checking proxy, with real
google-auth credentials; a crash between send and record re-sends once and the duplicate
answer (HTTP 409) confirms."""
import hashlib
from pathlib import Path

import pytest

from axiom_dagster.destinations.delivery import deliver_destination, make_sender
from axiom_dagster.store import audit
from axiom_dagster.store.deliveries import DeliveryState
from tests.destinations.support import FAST_RETRY, assert_identical_in_orthanc, staged
from tests.peers.healthcare_proxy import HealthcareProxy

pytestmark = pytest.mark.orthanc


def test_stow_confirms_and_verifies_by_qido(tmp_path, orthanc):
    dest = {"name": "web", "type": "dicomweb", "url": orthanc.dicomweb_url, "batch_size": 5, "verify": True, "retry": FAST_RETRY}
    config, store = staged(tmp_path, [dest])
    report = deliver_destination(config, store, "web")
    assert (report.confirmed, report.verified, report.failed) == (16, 16, 0), report.summary()
    rows = DeliveryState(store).rows("web")
    assert all(r["status"] == "confirmed" and r["status_code"] == 200 and r["verified_at"] for r in rows)
    assert orthanc.sop_instance_uids() == {r["sop_uid"] for r in rows}
    assert_identical_in_orthanc(orthanc, rows)
    # The audit route of each instance: the STOW-RS part sent, i.e. the staged file's bytes.
    for r in rows:
        (route,) = audit.routes_of(store, r["sop_uid"])
        assert route["destination"] == "web" and route["location"] == orthanc.dicomweb_url
        assert route["content_sha256"] == hashlib.sha256(Path(r["source_path"]).read_bytes()).hexdigest()


def test_stow_basic_auth_accepted_and_refused(tmp_path, orthanc):
    orthanc.extra.update(AuthenticationEnabled=True, RegisteredUsers={"axiom": "s3cret-pw"})
    orthanc.restart()
    good = {"name": "web", "type": "dicomweb", "url": orthanc.dicomweb_url, "retry": FAST_RETRY,
            "auth": {"type": "basic", "username": "axiom", "password": "s3cret-pw"}}
    bad = {**good, "name": "web-bad", "auth": {"type": "basic", "username": "axiom", "password": "wrong"}}
    config, store = staged(tmp_path, [good, bad], studies=1, real_world=False)
    assert deliver_destination(config, store, "web").confirmed == 6
    refused = deliver_destination(config, store, "web-bad")
    assert (refused.confirmed, refused.failed) == (0, 6)
    rows = DeliveryState(store).rows("web-bad")
    assert {(r["status"], r["status_code"], r["error"]) for r in rows} == {("failed", 401, "STOW-RS HTTP 401")}


@pytest.fixture
def healthcare(orthanc):
    proxy = HealthcareProxy(orthanc).start()
    yield proxy
    proxy.stop()


def test_healthcare_store_with_google_credentials_and_crash_resend(tmp_path, orthanc, healthcare):
    dest = {"name": "gcp", "type": "google_healthcare", "project": "axiom-test", "location": "local",
            "dataset": "ds", "dicom_store": "store", "endpoint": healthcare.endpoint,
            "credentials_file": healthcare.credentials_file(tmp_path), "retry": FAST_RETRY}
    config, store = staged(tmp_path, [dest], studies=2, real_world=False)
    state = DeliveryState(store)

    # First study: delivered normally (google-auth fetched a token from the token endpoint).
    first = state.claim_due("gcp", 6, lease_seconds=600)
    sender = make_sender(config, config.destinations[0])
    assert all(o.confirmed for o in sender.send(first)) and healthcare.tokens and healthcare.unauthorized == 0
    # ... but the process "dies" before recording: the rows stay `sent`.
    assert {r["status"] for r in state.rows("gcp") if r["id"] in {i.id for i in first}} == {"sent"}

    config.delivery.sent_lease_seconds = 0.001  # the lease of the dead claimer has run out
    report = deliver_destination(config, store, "gcp")
    assert (report.claimed, report.confirmed) == (12, 12)
    rows = {r["id"]: r for r in state.rows("gcp")}
    # The crashed study was sent exactly once more and the 409 "already exists" confirmed it.
    assert {(rows[i.id]["status"], rows[i.id]["status_code"], rows[i.id]["attempts"]) for i in first} == {("confirmed", 409, 2)}
    assert healthcare.conflicts == 1
    assert len(orthanc.instances()) == 12
