"""Crosswalk snapshots from bucket objects: GCS through gcp-storage-emulator and S3 through
moto's server, both on 127.0.0.1, read with the real google-cloud-storage and boto3 clients."""
import io

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from axiom_dagster.config.crosswalks import CrosswalkSpec
from axiom_dagster.crosswalks.lookup import open_crosswalk
from axiom_dagster.crosswalks.snapshot import SnapshotStore
from axiom_dagster.crosswalks.sources import CrosswalkSourceError
from tests.helpers import free_port

CSV = b"code,site\nA1,North\nB2,South\n"


@pytest.fixture
def gcs(monkeypatch):
    from gcp_storage_emulator.server import create_server
    from google.cloud import storage

    port = free_port()
    server = create_server("127.0.0.1", port, in_memory=True, default_bucket="crosswalks")
    server.start()
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{port}")
    yield storage.Client(project="test")
    server.stop()


@pytest.fixture
def s3(monkeypatch):
    import boto3
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    for k, v in {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(k, v)
    url = f"http://127.0.0.1:{port}"
    client = boto3.client("s3", endpoint_url=url)
    client.create_bucket(Bucket="crosswalks")
    yield client, url
    server.stop()


def test_gcs_csv_object(gcs, tmp_path):
    gcs.bucket("crosswalks").blob("sites.csv").upload_from_string(CSV)
    spec = CrosswalkSpec.model_validate({"source": {"type": "object", "uri": "gs://crosswalks/sites.csv"}, "keys": ["code"]})
    result = SnapshotStore(tmp_path, "sites").refresh(spec)
    assert result.promoted and result.rows == 2
    assert open_crosswalk("sites", spec, tmp_path, tmp_path).index(["code"]).get(("B2",)) == ("B2", "South")


def test_s3_parquet_object(s3, tmp_path):
    client, url = s3
    buf = io.BytesIO()
    pq.write_table(pa.table({"code": ["A1", "B2", "B2"], "site": ["N", "S", "S2"]}), buf)
    client.put_object(Bucket="crosswalks", Key="x/sites.parquet", Body=buf.getvalue())
    spec = CrosswalkSpec.model_validate({"source": {"type": "object", "uri": "s3://crosswalks/x/sites.parquet",
                                                    "endpoint_url": url}, "keys": ["code"]})
    result = SnapshotStore(tmp_path, "sites").refresh(spec)
    assert not result.promoted and result.failed_checks == ["keys_unique"]

    missing = CrosswalkSpec.model_validate({"source": {"type": "object", "uri": "s3://crosswalks/nope.csv",
                                                       "endpoint_url": url}, "keys": ["code"]})
    with pytest.raises(CrosswalkSourceError, match=r"crosswalks.sites: cannot read s3://crosswalks/\.\.\."):
        SnapshotStore(tmp_path, "sites").refresh(missing)
