"""Local stand-ins for the object stores, speaking the real protocols on 127.0.0.1:
gcp-storage-emulator (GCS JSON API) and moto in server mode (S3). Started by the tests."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.peers.orthanc import free_port

BIN = Path(sys.executable).parent


class LocalServer:
    def __init__(self, argv: list[str], port: int, env: dict | None = None):
        self.port = port
        self.process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                        env={**os.environ, **(env or {})})
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{argv[0]} exited with {self.process.returncode}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{argv[0]} did not listen within 30 s")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def gcs_emulator(bucket: str) -> LocalServer:
    port = free_port()
    return LocalServer([str(BIN / "gcp-storage-emulator"), "start", "--host", "127.0.0.1", "--port", str(port),
                        "--in-memory", "--default-bucket", bucket, "-q"], port)


def moto_s3() -> LocalServer:
    port = free_port()
    return LocalServer([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)], port)
