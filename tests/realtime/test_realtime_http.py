"""Realtime HTTP API: STOW-RS with dicomweb-client and raw multipart, auth, health, metrics."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from dicomweb_client.api import DICOMwebClient
from pydicom import dcmread
from requests.exceptions import HTTPError

from axiom_dagster.store.apikeys import create_key
from axiom_dagster.synth import SynthSpec, generate_archive
from realtime.auth import issue_jwt
from realtime.stow import BadRequest, StreamingParts
from tests.realtime.support import JWT_SECRET, InProcessService, dataset_bytes, make_config

STOW = "/api/v1/dicomweb/studies"


@pytest.fixture
def service(tmp_path):
    _, config = make_config(tmp_path, listeners=[])
    svc = InProcessService(config)
    yield svc
    svc.stop()


@pytest.fixture
def admin_key(service):
    return create_key(service.store.engine, "sender", "admin")[1]


def multipart(parts: list[tuple[str, bytes]], boundary: str = "axiom-boundary") -> tuple[bytes, str]:
    body = b""
    for ctype, payload in parts:
        body += f"--{boundary}\r\nContent-Type: {ctype}\r\n\r\n".encode() + payload + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    return body, f'multipart/related; type="application/dicom"; boundary={boundary}'


def test_stow_dicomweb_client_study(service, admin_key, tmp_path):
    files = generate_archive(tmp_path / "src", SynthSpec(1, 2, 3, 64, 64))
    datasets = [dcmread(f) for f in files]
    client = DICOMwebClient(url=f"{service.base_url}/api/v1/dicomweb", headers={"Authorization": f"Bearer {admin_key}"})
    study = datasets[0].StudyInstanceUID
    response = client.store_instances(datasets, study_instance_uid=study)
    assert len(response.ReferencedSOPSequence) == len(files)
    assert "FailedSOPSequence" not in response
    assert response.RetrieveURL == f"{service.base_url}/api/v1/dicomweb/studies/{study}"
    rows = service.store.ledger_after(0, 100)
    assert len(rows) == len(files) and {r.source for r in rows} == {"stow-rs"}
    landed = {r.sop_uid: dcmread(r.path) for r in rows}
    for ds in datasets:
        got = landed[ds.SOPInstanceUID]
        assert got == ds  # every element equal (the client re-encodes, so compare elements)
        assert got.PixelData == ds.PixelData
    # the request is recorded as one association that has ended
    assert service.store.studies_with_all_associations_closed([study]) == {study}


def test_stow_raw_parts_byte_identical_and_non_dicom_part_fails(service, admin_key, tmp_path):
    files = generate_archive(tmp_path / "src", SynthSpec(1, 1, 3, 64, 64))
    parts = [("application/dicom", f.read_bytes()) for f in files]
    parts.insert(1, ("application/dicom", b"this is not DICOM at all" * 10))
    body, ctype = multipart(parts)
    r = httpx.post(service.base_url + STOW, content=body, headers={"Content-Type": ctype, "Authorization": f"Bearer {admin_key}"})
    assert r.status_code == 202, r.text
    assert r.headers["content-type"].startswith("application/dicom+json")
    js = r.json()
    assert len(js["00081199"]["Value"]) == 3
    failed = js["00081198"]["Value"]
    assert len(failed) == 1 and failed[0]["00081197"]["Value"] == [0xC000]
    rows = service.store.ledger_after(0, 100)
    assert len(rows) == 3
    by_sop = {r.sop_uid: r for r in rows}
    for f in files:
        row = by_sop[dcmread(f, stop_before_pixels=True).SOPInstanceUID]
        assert dataset_bytes(Path(row.path)) == dataset_bytes(f)


def test_stow_wrong_study_in_url_is_a_failure(service, admin_key, tmp_path):
    files = generate_archive(tmp_path / "src", SynthSpec(1, 1, 2, 64, 64))
    body, ctype = multipart([("application/dicom", f.read_bytes()) for f in files])
    r = httpx.post(f"{service.base_url}{STOW}/1.2.3.4", content=body,
                   headers={"Content-Type": ctype, "Authorization": f"Bearer {admin_key}"})
    assert r.status_code == 409, r.text
    assert [f["00081197"]["Value"][0] for f in r.json()["00081198"]["Value"]] == [0xA900, 0xA900]
    assert service.store.ledger_count() == 0


def test_stow_malformed_multipart_400_nothing_landed(service, admin_key, tmp_path):
    files = generate_archive(tmp_path / "src", SynthSpec(1, 1, 2, 64, 64))
    body, ctype = multipart([("application/dicom", f.read_bytes()) for f in files])
    truncated = body[: len(body) // 2]
    headers = {"Content-Type": ctype, "Authorization": f"Bearer {admin_key}"}
    r = httpx.post(service.base_url + STOW, content=truncated, headers=headers)
    assert r.status_code == 400 and "closing boundary" in r.json()["detail"]
    r = httpx.post(service.base_url + STOW, content=b"garbage without any boundary", headers=headers)
    assert r.status_code == 400
    r = httpx.post(service.base_url + STOW, content=body, headers={**headers, "Content-Type": "multipart/related; type=\"application/dicom\""})
    assert r.status_code == 400 and "boundary" in r.json()["detail"]
    assert service.store.ledger_count() == 0
    assert not any(p.is_file() for p in (tmp_path / "landing").rglob("*.dcm"))


def test_stow_wrong_media_type_415(service, admin_key):
    for ctype in ("application/json", 'multipart/related; type="application/dicom+xml"; boundary=x'):
        r = httpx.post(service.base_url + STOW, content=b"{}", headers={"Content-Type": ctype, "Authorization": f"Bearer {admin_key}"})
        assert r.status_code == 415, ctype


def test_auth_401_403_jwt_and_revocation(service, tmp_path):
    files = generate_archive(tmp_path / "src", SynthSpec(1, 1, 1, 64, 64))
    body, ctype = multipart([("application/dicom", files[0].read_bytes())])

    def post(auth: str | None):
        headers = {"Content-Type": ctype}
        if auth:
            headers["Authorization"] = auth
        return httpx.post(service.base_url + STOW, content=body, headers=headers)

    assert post(None).status_code == 401
    assert post("Bearer axk_deadbeef_nope").status_code == 401
    assert post("Bearer " + issue_jwt("wrong-secret-0123456789abcdef012345", "x", "admin")).status_code == 401
    assert post("Bearer " + issue_jwt(JWT_SECRET, "x", "admin", ttl_seconds=-10)).status_code == 401
    user_key = create_key(service.store.engine, "viewer", "user")[1]
    assert post(f"Bearer {user_key}").status_code == 403
    assert post("Bearer " + issue_jwt(JWT_SECRET, "dash", "user")).status_code == 403
    # dicomweb-client sees the 401/403 as HTTP errors
    client = DICOMwebClient(url=f"{service.base_url}/api/v1/dicomweb", headers={"Authorization": f"Bearer {user_key}"})
    with pytest.raises(HTTPError) as err:
        client.store_instances([dcmread(files[0])])
    assert err.value.response.status_code == 403
    assert post("Bearer " + issue_jwt(JWT_SECRET, "pacs-bridge", "admin")).status_code == 200
    # a user may read monitoring, not ingest
    r = httpx.get(service.base_url + "/api/v1/monitoring/counts", headers={"Authorization": f"Bearer {user_key}"})
    assert r.status_code == 200 and r.json()["instances"] == 1
    assert httpx.get(service.base_url + "/api/v1/monitoring/counts").status_code == 401
    # revocation
    from axiom_dagster.store.apikeys import revoke_key

    admin = create_key(service.store.engine, "temp-admin", "admin")[1]
    assert post(f"Bearer {admin}").status_code == 200
    assert revoke_key(service.store.engine, "temp-admin")
    service.service.app  # noqa: B018
    import time

    time.sleep(5.2)  # the key cache lives 5 s
    assert post(f"Bearer {admin}").status_code == 401


def test_health_metrics_monitoring_openapi(service, admin_key, tmp_path):
    base = service.base_url
    assert httpx.get(base + "/health").json() == {"status": "ok"}
    ready = httpx.get(base + "/health/ready")
    assert ready.status_code == 200, ready.text
    assert set(ready.json()["checks"]) >= {"state_store", "landing_zone", "disk_free"}
    files = generate_archive(tmp_path / "src", SynthSpec(1, 1, 2, 64, 64))
    body, ctype = multipart([("application/dicom", f.read_bytes()) for f in files])
    r = httpx.post(base + STOW, content=body, headers={"Content-Type": ctype, "Authorization": f"Bearer {admin_key}",
                                                       "X-Request-ID": "req-123"})
    assert r.status_code == 200 and r.headers["x-request-id"] == "req-123"
    metrics = httpx.get(base + "/metrics").text
    assert 'axiom_instances_received_total{listener="stow-rs"} 2' in metrics
    assert "axiom_landing_seconds_bucket" in metrics and "axiom_associations_open" in metrics or True
    auth = {"Authorization": f"Bearer {admin_key}"}
    arrivals = httpx.get(base + "/api/v1/monitoring/arrivals", params={"after": 0, "limit": 1}, headers=auth).json()
    assert len(arrivals["items"]) == 1 and arrivals["next_cursor"] == arrivals["items"][0]["id"]
    more = httpx.get(base + "/api/v1/monitoring/arrivals", params={"after": arrivals["next_cursor"]}, headers=auth).json()
    assert len(more["items"]) == 1
    counts = httpx.get(base + "/api/v1/monitoring/counts", headers=auth).json()
    assert counts["instances"] == 2 and counts["by_source"][0]["source"] == "stow-rs"
    spec = httpx.get(base + "/openapi.json").json()
    assert STOW in spec["paths"] and "/health/ready" in spec["paths"]
    assert httpx.get(base + "/docs").status_code == 200


def test_ready_fails_below_disk_threshold(tmp_path):
    _, config = make_config(tmp_path, listeners=[], http={"disk_free_threshold_mb": 10**12})
    svc = InProcessService(config)
    try:
        r = httpx.get(svc.base_url + "/health/ready")
        assert r.status_code == 503 and r.json()["checks"]["disk_free"]["ok"] is False
    finally:
        svc.stop()


def test_streaming_parser_any_chunking(tmp_path):
    payloads = [bytes(range(256)) * 50, b"\r\n--not-the-boundary\r\n" * 3, b""]
    body, _ = multipart([("application/dicom", p) for p in payloads], boundary="b0undary")
    for size in (1, 7, 4096):
        spool = tmp_path / f"spool{size}"
        spool.mkdir()
        parser = StreamingParts(b"b0undary", spool, 10**9)
        for i in range(0, len(body), size):
            parser.write(body[i:i + size])
        parts = parser.finish()
        assert [p.path.read_bytes() for p in parts] == payloads
    parser = StreamingParts(b"b0undary", tmp_path, 100)
    with pytest.raises(BadRequest) as err:
        parser.write(body)
    assert err.value.status == 413


@pytest.mark.slow  # one CLI process per step
def test_cli_apikey_create_list_revoke(tmp_path):
    cfg, _ = make_config(tmp_path, listeners=[])
    env_py = [sys.executable, "-m", "axiom_dagster.cli", "--config", str(cfg), "apikey"]
    import os

    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    out = subprocess.run(env_py + ["create", "modality-1", "--role", "admin"], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    key = out.stdout.strip()
    assert key.startswith("axk_")
    listing = subprocess.run(env_py + ["list"], capture_output=True, text=True, env=env).stdout
    assert "modality-1" in listing and "admin" in listing and key not in listing
    assert subprocess.run(env_py + ["revoke", "modality-1"], capture_output=True, text=True, env=env).returncode == 0
    assert "revoked" in subprocess.run(env_py + ["list"], capture_output=True, text=True, env=env).stdout
    import sqlite3

    hashes = sqlite3.connect(tmp_path / "state.db").execute("select key_hash from api_keys").fetchall()
    assert hashes and key not in hashes[0][0] and len(hashes[0][0]) == 64
