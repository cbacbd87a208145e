"""Local stand-ins for object storage, speaking the real protocols on 127.0.0.1:
gcp-storage-emulator (GCS JSON API) and moto in server mode (S3)."""
from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(cmd: list[str], url: str, cwd: Path):
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
            return proc
        except httpx.HTTPError:
            if proc.poll() is not None:
                raise RuntimeError(f"{cmd[0]} exited with {proc.returncode}")
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"{cmd[0]} did not start")


@pytest.fixture
def gcs_catalog(tmp_path, monkeypatch):
    """gs://catalog-test/catalog on a started gcp-storage-emulator."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    proc = _serve([str(BIN / "gcp-storage-emulator"), "start", "-H", "127.0.0.1", "--port", str(port),
                   "--in-memory", "-q", "--default-bucket", "catalog-test"], url, tmp_path)
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", url)
    try:
        yield "gs://catalog-test/catalog"
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def s3_catalog(tmp_path, monkeypatch):
    """s3://catalog-test/catalog on a started moto server."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    proc = _serve([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)], url, tmp_path)
    for key, value in {"AWS_ENDPOINT_URL": url, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    httpx.put(f"{url}/catalog-test").raise_for_status()  # create the bucket
    try:
        yield "s3://catalog-test/catalog"
    finally:
        proc.terminate()
        proc.wait(10)
