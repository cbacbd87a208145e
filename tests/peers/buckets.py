"""Local stand-ins for the object stores, speaking the real protocols on 127.0.0.1:
gcp-storage-emulator (GCS JSON API) and moto in server mode (S3). Started by the tests."""
from __future__ import annotations

import sys
from pathlib import Path

from tests.helpers import free_port
from tests.peers.process import start_listener, stop_process

BIN = Path(sys.executable).parent


class LocalServer:
    def __init__(self, argv: list[str], port: int):
        self.port = port
        self.process = start_listener(argv, port)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        stop_process(self.process)


def gcs_emulator(bucket: str) -> LocalServer:
    port = free_port()
    return LocalServer([str(BIN / "gcp-storage-emulator"), "start", "--host", "127.0.0.1", "--port", str(port),
                        "--in-memory", "--default-bucket", bucket, "-q"], port)


def moto_s3() -> LocalServer:
    port = free_port()
    return LocalServer([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)], port)
