"""The receivers bench/ingest.py measures, apart from DCMTK storescp and Orthanc: a minimal
pynetdicom C-STORE SCP, the realtime service in this process, and `axiom realtime --workers N`
in its own process tree; and the fresh PostgreSQL databases they use."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import yaml  # noqa: E402

from axiom_dagster.config.models import parse_config  # noqa: E402
from tests.helpers import free_port  # noqa: E402

DCMTK_ENV = dict(os.environ, TCP_NODELAY="1")


class MinimalSCP:
    """pynetdicom C-STORE SCP: write encoded_dataset() to a file, no fsync, no ledger."""

    def __init__(self, out: Path, max_pdu: int):
        from pynetdicom import AE, evt
        from pynetdicom.presentation import AllStoragePresentationContexts

        self.out = out
        self.port = free_port()
        ae = AE(ae_title="AXIOM")
        ae.maximum_pdu_size = max_pdu
        for cx in AllStoragePresentationContexts:
            ae.add_supported_context(cx.abstract_syntax, ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"])

        def on_open(event):
            event.assoc.dul.socket.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def on_store(event):
            with open(out / f"{event.request.AffectedSOPInstanceUID}.dcm", "wb") as fh:
                fh.write(event.encoded_dataset())
            return 0x0000

        self.ae = ae
        self.server = ae.start_server(("127.0.0.1", self.port), block=False,
                                      evt_handlers=[(evt.EVT_CONN_OPEN, on_open), (evt.EVT_C_STORE, on_store)])

    def stop(self):
        self.server.shutdown()


def state_store_url(root: Path, pg_admin: str | None) -> str:
    """SQLite under root, or (--pg) a fresh database on the given PostgreSQL server."""
    if not pg_admin:
        return f"sqlite:///{root / 'state.db'}"
    import sqlalchemy as sa

    name = f"axiom_bench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(pg_admin, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    admin.dispose()
    _PG_DATABASES.append((pg_admin, name))
    return pg_admin.rsplit("/", 1)[0] + f"/{name}"


_PG_DATABASES: list[tuple[str, str]] = []


def drop_pg_databases() -> None:
    import sqlalchemy as sa

    for admin_url, name in _PG_DATABASES:
        admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()
    _PG_DATABASES.clear()


class Service:
    def __init__(self, root: Path, url: str | None = None):
        from realtime.service import RealtimeService, _Server
        import uvicorn

        from axiom_dagster.store.apikeys import create_key

        self.port, self.http_port = free_port(), free_port()
        data = {
            "landing": {"path": str(root / "landing"), "quarantine_path": str(root / "q")},
            "state_store": {"url": url or f"sqlite:///{root / 'state.db'}"},
            "listeners": [{"name": "bench", "ae_title": "AXIOM", "port": self.port}],
            "http": {"port": self.http_port, "disk_free_threshold_mb": 1},
        }
        config = parse_config(yaml.safe_dump(data), base_dir=root)
        self.svc = RealtimeService(config)
        self.svc.start_dicom()
        self.server = _Server(uvicorn.Config(self.svc.app, host="127.0.0.1", port=self.http_port, log_config=None,
                                             access_log=False, lifespan="off"))
        self.svc.http_server = self.server
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        while not self.server.started:
            time.sleep(0.02)
        self.key = create_key(self.svc.store.engine, f"bench-{uuid.uuid4().hex[:6]}", "admin")[1]

    def stop(self):
        self.svc.request_stop()
        self.thread.join(10)
        self.svc.shutdown()


class MultiProcessService:
    """`axiom realtime --workers N` in its own process tree (supervisor + N listener workers)."""

    def __init__(self, root: Path, workers: int, url: str, code: Path = ROOT):
        root.mkdir(parents=True)
        self.port, self.http_port = free_port(), free_port()
        self.url = url
        data = {
            "landing": {"path": str(root / "landing"), "quarantine_path": str(root / "q")},
            "state_store": {"url": url},
            "listeners": [{"name": "bench", "ae_title": "AXIOM", "port": self.port}],
            "http": {"port": self.http_port, "disk_free_threshold_mb": 1},
        }
        config = root / "axiom.yaml"
        config.write_text(yaml.safe_dump(data))
        self.log = root / "service.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "axiom_dagster.cli", "realtime", "--config", str(config), "--workers", str(workers),
             "--log-level", "WARNING"], cwd=code, env=DCMTK_ENV, stdout=subprocess.DEVNULL, stderr=self.log.open("wb"))
        deadline = time.monotonic() + 120
        while True:  # every worker accepts once its HTTP socket answers; probe until all have bound
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    pass
                if httpx.get(f"http://127.0.0.1:{self.http_port}/health", timeout=1).status_code == 200:
                    break
            except (OSError, httpx.HTTPError):
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"the multi-process service did not start; see {self.log}")
            time.sleep(0.1)
        time.sleep(3.0)  # let the remaining workers finish starting (imports) before measuring

    def ledger_count(self) -> int:
        from axiom_dagster.store.state import StateStore

        store = StateStore(self.url)
        try:
            return store.ledger_count()
        finally:
            store.dispose()

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
