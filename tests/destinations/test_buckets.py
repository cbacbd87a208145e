"""GCS (gcp-storage-emulator) and S3 (moto server) destinations with the real clients:
objects named by the path template, checksums verified, re-sends harmless."""
import base64
import hashlib
from pathlib import Path

import boto3
import google_crc32c
import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from axiom_dagster.destinations.delivery import deliver_destination, make_sender
from axiom_dagster.store import audit
from axiom_dagster.store.deliveries import DeliveryState
from tests.destinations.support import FAST_RETRY, staged
from tests.peers.buckets import gcs_emulator, moto_s3

TEMPLATE = "dicom/{StudyInstanceUID}/{SeriesInstanceUID}/{SOPInstanceUID}.dcm"


def _setup(tmp_path, dest):
    config, store = staged(tmp_path, [dest], studies=2, real_world=True)
    return config, store


def _expected_name(row) -> str:
    from pydicom import dcmread

    ds = dcmread(row["source_path"], stop_before_pixels=True)
    return f"dicom/{ds.StudyInstanceUID}/{ds.SeriesInstanceUID}/{ds.SOPInstanceUID}.dcm"


@pytest.fixture
def gcs():
    server = gcs_emulator("axiom-archive")
    yield server
    server.stop()


@pytest.fixture
def s3(monkeypatch):
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    server = moto_s3()
    boto3.client("s3", endpoint_url=server.url).create_bucket(Bucket="axiom-archive")
    yield server
    server.stop()


def test_gcs_objects_written_and_crc32c_verified(tmp_path, gcs):
    dest = {"name": "gcs", "type": "gcs", "bucket": "axiom-archive", "endpoint": gcs.url, "project": "axiom-test",
            "path_template": TEMPLATE, "retry": FAST_RETRY}
    config, store = _setup(tmp_path, dest)
    report = deliver_destination(config, store, "gcs")
    assert (report.confirmed, report.failed) == (16, 0), report.summary()
    rows = DeliveryState(store).rows("gcs")
    bucket = storage.Client(project="axiom-test", credentials=AnonymousCredentials(),
                            client_options={"api_endpoint": gcs.url}).bucket("axiom-archive")
    for row in rows:
        name = _expected_name(row)
        assert row["location"] == f"gs://axiom-archive/{name}"
        data = Path(row["source_path"]).read_bytes()
        blob = bucket.blob(name)
        assert blob.download_as_bytes() == data
        blob.reload()
        assert blob.crc32c == base64.b64encode(google_crc32c.Checksum(data).digest()).decode()
    # A re-send (crash between send and record) overwrites with the same bytes and confirms.
    items = DeliveryState(store).claim_due("gcs", 100, 600)
    assert items == []  # nothing due: all confirmed


def test_s3_objects_written_and_etag_verified(tmp_path, s3):
    dest = {"name": "s3", "type": "s3", "bucket": "axiom-archive", "endpoint": s3.url, "region": "us-east-1",
            "path_template": TEMPLATE, "retry": FAST_RETRY}
    config, store = _setup(tmp_path, dest)
    # Crash window: one study sent, not recorded; the run after the lease sends it once more.
    state = DeliveryState(store)
    first = state.claim_due("s3", 6, 600)
    assert all(o.confirmed for o in make_sender(config, config.destinations[0]).send(first))
    config.delivery.sent_lease_seconds = 0.001
    report = deliver_destination(config, store, "s3")
    assert (report.claimed, report.confirmed) == (16, 16), report.summary()
    client = boto3.client("s3", endpoint_url=s3.url)
    listed = client.list_objects_v2(Bucket="axiom-archive")["Contents"]
    assert len(listed) == 16
    for row in state.rows("s3"):
        name = _expected_name(row)
        assert row["location"] == f"s3://axiom-archive/{name}"
        stored = client.get_object(Bucket="axiom-archive", Key=name)["Body"].read()
        assert stored == Path(row["source_path"]).read_bytes()
        # Sent twice (the crash window above), recorded once: the confirmed delivery.
        (route,) = audit.routes_of(store, row["sop_uid"])
        assert route["location"] == row["location"] and route["content_sha256"] == hashlib.sha256(stored).hexdigest()


def test_confirmed_copies_leave_the_outbox(tmp_path, s3):
    dest = {"name": "s3", "type": "s3", "bucket": "axiom-archive", "endpoint": s3.url, "region": "us-east-1", "retry": FAST_RETRY}
    config, store = _setup(tmp_path, dest)
    config.delivery.keep_confirmed_copies = False
    copies = [Path(r["source_path"]) for r in DeliveryState(store).rows("s3")]
    assert all(p.is_file() and p.is_relative_to(config.staging_path) for p in copies)
    assert deliver_destination(config, store, "s3").confirmed == 16
    assert not any(p.exists() for p in copies)


def test_s3_missing_bucket_fails_with_status(tmp_path, s3):
    dest = {"name": "s3", "type": "s3", "bucket": "no-such-bucket", "endpoint": s3.url, "region": "us-east-1",
            "retry": FAST_RETRY}
    config, store = _setup(tmp_path, dest)
    report = deliver_destination(config, store, "s3")
    assert (report.confirmed, report.failed) == (0, 16)
    rows = DeliveryState(store).rows("s3")
    assert {(r["status"], r["status_code"], r["error"]) for r in rows} == {("failed", 404, "S3 upload failed: NoSuchBucket")}
