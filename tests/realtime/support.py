"""Helpers for the realtime tests: free ports, an in-process service, certificates."""
from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path

import yaml

from axiom_dagster.config.models import parse_config
from tests.helpers import free_port

DCMTK_ENV = dict(os.environ, TCP_NODELAY="1")
JWT_SECRET = "test-secret-0123456789abcdef0123456789"


def make_config(root: Path, listeners: list[dict] | None = None, http: dict | None = None, **extra):
    data = {
        "landing": {"path": str(root / "landing"), "quarantine_path": str(root / "quarantine")},
        "state_store": {"url": f"sqlite:///{root / 'state.db'}"},
        "listeners": listeners if listeners is not None else [
            {"name": "main", "ae_title": "AXIOM", "port": free_port()}],
        "http": {"port": free_port(), "disk_free_threshold_mb": 1, "shutdown_grace_seconds": 5, **(http or {})},
        "auth": {"jwt_secret": JWT_SECRET},
        **extra,
    }
    path = root / "axiom.yaml"
    path.write_text(yaml.safe_dump(data))
    return path, parse_config(path.read_text(), source=str(path), base_dir=root)


class InProcessService:
    """RealtimeService with the HTTP server on a background thread."""

    def __init__(self, config):
        from realtime.service import RealtimeService, _Server
        import uvicorn

        self.service = RealtimeService(config)
        self.config = config
        self.service.recover()
        self.service.start_dicom()
        http = config.http
        self.server = _Server(uvicorn.Config(self.service.app, host=http.bind, port=http.port, log_config=None,
                                             access_log=False, lifespan="off"))
        self.service.http_server = self.server
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        assert self.server.started, "HTTP server did not start"

    @property
    def base_url(self) -> str:
        return f"http://{self.config.http.bind}:{self.config.http.port}"

    def port(self, listener: str = "main") -> int:
        return next(s.port for s in self.service.listeners if s.listener.name == listener)

    @property
    def store(self):
        return self.service.store

    def stop(self):
        self.service.request_stop()
        self.thread.join(10)
        self.service.shutdown()


def dataset_bytes(path: Path) -> bytes:
    from axiom_dagster.ingest.rawheader import part10_layout

    raw = Path(path).read_bytes()
    offset, _ = part10_layout(raw[:65536])
    return raw[offset:]


def make_certs(folder: Path) -> dict[str, Path]:
    """A CA, a server certificate (CN/SAN localhost, 127.0.0.1) and a client certificate."""
    folder.mkdir(parents=True, exist_ok=True)

    def run(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=folder)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
        "-days", "2", "-subj", "/CN=Axiom Test CA")
    for name, cn in (("server", "localhost"), ("client", "modality")):
        run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}")
        (folder / f"{name}.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext")
    return {n: folder / n for n in ("ca.pem", "server.pem", "server.key", "client.pem", "client.key")}
