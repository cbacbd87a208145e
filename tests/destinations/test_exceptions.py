"""The exception queue end to end: a destination down past the maximum age leaves exceptions;
`axiom exceptions list|retry|resolve` and the HTTP API requeue them (same or another
destination) and resolve them, recording who and when; requeued instances are delivered."""
import pytest
from fastapi.testclient import TestClient

from axiom_dagster.cli import main
from axiom_dagster.ingest.landing import LandingZone
from axiom_dagster.store.apikeys import create_key
from axiom_dagster.store.deliveries import DeliveryState
from axiom_dagster.store.state import StateStore
from realtime.app import create_app
from realtime.metrics import Metrics
from tests.destinations.support import FAST_RETRY, delivery_config, input_folder, process
from tests.helpers import write_config_file

pytestmark = pytest.mark.orthanc


@pytest.fixture
def given_up(tmp_path, orthanc):
    """Orthanc down during delivery with max age 0: every instance of 'pacs' is an exception."""
    destinations = [
        {"name": "pacs", "type": "dicom", "host": "127.0.0.1", "port": orthanc.dicom_port, "ae_title": orthanc.aet,
         "retry": {**FAST_RETRY, "max_age_seconds": 0}},
        {"name": "web", "type": "dicomweb", "url": orthanc.dicomweb_url, "retry": FAST_RETRY},
        {"name": "folder", "type": "filesystem", "path": str(tmp_path / "folder")},
    ]
    # The pipeline routes to pacs and web; the folder is added later, as a requeue target.
    routed = delivery_config(tmp_path, f"sqlite:///{tmp_path / 'state.db'}", destinations[:2])
    store = StateStore(routed.state_store_url)
    store.migrate()
    process(routed, store, input_folder(tmp_path, studies=1, series=1, instances=4, real_world=False))
    config = delivery_config(tmp_path, routed.state_store_url, destinations)
    config_file = write_config_file(config, tmp_path / "axiom.yaml")
    # 'web' gets the copies too; take it out of the picture for this test.
    DeliveryState(store).claim_due("web", 100, 600)
    orthanc.stop()
    assert main(["--config", str(config_file), "deliver", "--destination", "pacs"]) == 1  # exceptions opened
    yield config, config_file, store
    store.dispose()


def test_cli_list_retry_resolve(given_up, orthanc, capsys):
    config, config_file, store = given_up
    cli = ["--config", str(config_file)]
    capsys.readouterr()
    assert main([*cli, "exceptions", "list", "--stage", "deliver"]) == 0
    out = capsys.readouterr().out
    assert "4 exceptions" in out and out.count("\tdeliver\tpacs\t") == 4
    assert "cannot connect to the peer" in out
    ids = [e["id"] for e in DeliveryState(store).list_exceptions(stage="deliver")]

    orthanc.start()
    assert main([*cli, "exceptions", "retry", str(ids[0]), "--by", "alice"]) == 0
    assert main([*cli, "exceptions", "retry", str(ids[1]), "--to", "folder", "--by", "alice"]) == 0
    assert main([*cli, "exceptions", "resolve", str(ids[2]), "--note", "sent by hand", "--by", "bob"]) == 0
    assert main([*cli, "exceptions", "resolve", str(ids[2])]) == 1  # already resolved
    assert main([*cli, "exceptions", "retry", str(ids[3]), "--to", "nowhere"]) == 2
    capsys.readouterr()
    assert main([*cli, "deliver", "--destination", "pacs", "--destination", "folder"]) == 0
    out = capsys.readouterr().out
    assert "pacs: 1 due, 1 confirmed" in out and "folder: 1 due, 1 confirmed" in out

    state = DeliveryState(store)
    done = {e["id"]: e for e in state.list_exceptions(open_only=False, stage="deliver")}
    assert (done[ids[0]]["resolved_by"], done[ids[0]]["resolution"]) == ("cli:alice", "requeued to pacs")
    assert (done[ids[1]]["resolved_by"], done[ids[1]]["resolution"]) == ("cli:alice", "requeued to folder")
    assert (done[ids[2]]["resolved_by"], done[ids[2]]["resolution"]) == ("cli:bob", "sent by hand")
    assert all(done[i]["resolved_at"] for i in ids[:3]) and done[ids[3]]["resolved_at"] is None
    assert len(orthanc.instances()) == 1
    folder_copy = [r for r in state.rows("folder") if r["status"] == "confirmed"]
    assert len(folder_copy) == 1 and (config.base_dir / "folder").exists()
    trail = store.study_report(done[ids[0]]["study_uid"])["audit"]
    assert [a["actor"] for a in trail if a["action"] == "exception_resolved"] == ["cli:alice", "cli:alice", "cli:bob"]


def test_http_api_list_requeue_resolve(given_up, orthanc):
    config, _, store = given_up
    app = create_app(config, LandingZone(config.landing_path, config.quarantine_path, store), Metrics())
    client = TestClient(app)
    _, admin_key = create_key(store.engine, "ops-admin", "admin")
    _, user_key = create_key(store.engine, "viewer", "user")
    admin, user = {"Authorization": f"Bearer {admin_key}"}, {"Authorization": f"Bearer {user_key}"}

    listed = client.get("/api/v1/exceptions", params={"stage": "deliver"}, headers=user)
    assert listed.status_code == 200 and len(listed.json()) == 4
    first, second, third = (e["id"] for e in listed.json()[:3])
    assert client.post(f"/api/v1/exceptions/{first}/retry", headers=user).status_code == 403
    assert client.post(f"/api/v1/exceptions/{first}/retry", json={"destination": "nowhere"}, headers=admin).status_code == 400

    orthanc.start()
    requeued = client.post(f"/api/v1/exceptions/{first}/retry", headers=admin)
    assert requeued.status_code == 200 and requeued.json()["resolved_by"] == "apikey:ops-admin"
    moved = client.post(f"/api/v1/exceptions/{second}/retry", json={"destination": "web"}, headers=admin)
    assert moved.json()["resolution"] == "requeued to web"
    resolved = client.post(f"/api/v1/exceptions/{third}/resolve", json={"note": "duplicate of an earlier study"}, headers=admin)
    assert resolved.status_code == 200
    assert client.post(f"/api/v1/exceptions/{third}/resolve", headers=admin).status_code == 409
    assert client.post("/api/v1/exceptions/999999/resolve", headers=admin).status_code == 404
    assert len(client.get("/api/v1/exceptions", params={"stage": "deliver"}, headers=user).json()) == 1

    from axiom_dagster.destinations.delivery import deliver_all

    reports = deliver_all(config, store, names=["pacs", "web"])
    assert (reports["pacs"].confirmed, reports["web"].confirmed) == (1, 1)
    study = DeliveryState(store).rows("pacs")[0]["study_uid"]
    report = client.get(f"/api/v1/studies/{study}", headers=user).json()
    assert report["delivery_state"]["pacs"]["confirmed"] == 1 and report["delivery_state"]["pacs"]["state"] == "failed"
