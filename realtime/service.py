"""`axiom realtime`: one process serving the DICOM listeners and the HTTP API.

Shutdown (SIGTERM/SIGINT): stop accepting DICOM associations and HTTP connections, let the
associations and requests in flight finish (up to http.shutdown_grace_seconds), record their
end in the state store, exit. A second signal aborts what is left.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import uvicorn

from axiom_dagster.config.models import AxiomConfig
from axiom_dagster.ingest.landing import LandingZone
from axiom_dagster.store.state import StateStore

from .app import create_app
from .dimse import DicomListenerService
from .logs import setup_logging
from .metrics import Metrics
from .handoff import listening_socket
from .stow import SOURCE as STOW_SOURCE

log = logging.getLogger("axiom.realtime")


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the service owns SIGTERM/SIGINT."""

    @contextlib.contextmanager
    def capture_signals(self):
        yield


class RealtimeService:
    """`channels`: this process is one of several listener workers (realtime/workers.py): its
    DICOM connections come from the supervisor over these channels, one per listener
    (realtime/handoff.py), its HTTP socket uses SO_REUSEPORT, and crash recovery is left to
    the supervisor."""

    def __init__(self, config: AxiomConfig, *, close_stale_associations: bool = True,
                 channels: list[socket.socket] | None = None):
        self.config = config
        self.worker = channels is not None
        self.store = StateStore(config.state_store_url)
        if not self.worker:
            self.store.migrate()  # the supervisor migrated once before starting its workers
        self.zone = LandingZone.for_config(config, self.store)
        self.metrics = Metrics()
        self.listeners = [DicomListenerService(lc, self.zone, self.metrics, config.resolve,
                                               channel=channels[i] if channels else None)
                          for i, lc in enumerate(config.listeners)]
        self.app = create_app(config, self.zone, self.metrics, self.dicom_status)
        self.http_server: _Server | None = None
        self._stopping = threading.Event()
        self._stopped = threading.Event()
        self._close_stale = close_stale_associations and not self.worker

    def dicom_status(self) -> dict:
        return {s.listener.name: {"accepting": s.server is not None, "port": s.port,
                                  "open_associations": s.active_associations()} for s in self.listeners}

    # ---- start --------------------------------------------------------------------------

    def recover(self) -> None:
        """After a crash: close associations a dead process left open (their studies would
        otherwise never complete) and delete half-written temp files. Single-replica only:
        with several replicas sharing a state store, start them with close_stale_associations=False."""
        sources = [lc.name for lc in self.config.listeners] + [STOW_SOURCE]
        if self._close_stale:
            n = close_stale_associations(self.store, sources)
            if n:
                log.warning("closed associations left open by a previous run", extra={"associations": n})
        removed = sweep_temp_files(self.zone.root)
        if removed:
            log.warning("removed half-written temp files", extra={"files": removed})

    def start_dicom(self) -> None:
        for s in self.listeners:
            s.start()

    def run(self) -> int:
        if not self.worker:
            self.recover()  # a worker's siblings may be writing temp files right now
        self.start_dicom()
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            http = self.config.http
            if http.enabled:
                cfg = uvicorn.Config(self.app, host=http.bind, port=http.port, log_config=None,
                                     access_log=False, timeout_graceful_shutdown=int(http.shutdown_grace_seconds) or None,
                                     lifespan="off")
                self.http_server = _Server(cfg)
                sockets = [listening_socket(http.bind, http.port, reuse_port=True)] if self.worker else None
                log.info("realtime service ready", extra={"http": f"{http.bind}:{http.port}",
                                                          "dicom": {s.listener.name: s.port for s in self.listeners}})
                asyncio.run(self.http_server.serve(sockets=sockets))
            else:
                log.info("realtime service ready", extra={"dicom": {s.listener.name: s.port for s in self.listeners}})
                while not self._stopping.is_set():
                    self._stopping.wait(0.5)
        finally:
            self.shutdown()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return 0

    # ---- stop ---------------------------------------------------------------------------

    def _on_signal(self, signum, _frame) -> None:
        if self._stopping.is_set():
            log.warning("second signal: aborting associations in progress")
            for s in self.listeners:
                threading.Thread(target=s.abort_all, daemon=True).start()
            if self.http_server:
                self.http_server.force_exit = True
            return
        log.info("shutting down", extra={"signal": signal.Signals(signum).name})
        self.request_stop()

    def request_stop(self) -> None:
        self._stopping.set()
        # Stop accepting at once (shutdown() blocks until the accept loop ends: own thread).
        for s in self.listeners:
            threading.Thread(target=s.stop_accepting, daemon=True).start()
        if self.http_server:
            self.http_server.should_exit = True

    def shutdown(self) -> None:
        if self._stopped.is_set():
            return
        self._stopping.set()
        for s in self.listeners:
            s.stop_accepting()
        deadline = time.monotonic() + self.config.http.shutdown_grace_seconds
        for s in self.listeners:
            if not s.wait_idle(max(0.0, deadline - time.monotonic())):
                log.warning("associations still open at the end of the grace period: aborting",
                            extra={"listener": s.listener.name, "open": s.active_associations()})
                s.abort_all()
                s.wait_idle(5)
        self.zone.close()
        self.store.dispose()
        self._stopped.set()
        log.info("realtime service stopped")


def close_stale_associations(store: StateStore, sources: list[str]) -> int:
    from sqlalchemy import update

    from axiom_dagster.store.schema import associations

    with store.engine.begin() as conn:
        return conn.execute(
            update(associations)
            .where(associations.c.ended_at.is_(None), associations.c.source.in_(sources))
            .values(ended_at=datetime.now(timezone.utc))
        ).rowcount


def sweep_temp_files(root: Path, days: int = 2) -> int:
    """Delete LandingZone temp files (.<name>.<hex>.tmp) in the newest arrival-date folders."""
    removed = 0
    if not root.is_dir():
        return 0
    today = datetime.now(timezone.utc).date()
    for d in range(days):
        folder = root / (today - timedelta(days=d)).isoformat()
        if not folder.is_dir():
            continue
        for dirpath, _dirs, files in os.walk(folder):
            for name in files:
                if name.startswith(".") and name.endswith(".tmp"):
                    with contextlib.suppress(OSError):
                        os.unlink(os.path.join(dirpath, name))
                        removed += 1
    import shutil

    for spool in (root / ".stow-spool", root / ".dimse-spool"):
        if spool.is_dir():
            shutil.rmtree(spool, ignore_errors=True)
    return removed


def main(config: AxiomConfig, log_level: str = "INFO") -> int:
    setup_logging(log_level)
    # AXIOM_CLOSE_STALE_ASSOCIATIONS=0 when several replicas share one state store.
    close_stale = os.environ.get("AXIOM_CLOSE_STALE_ASSOCIATIONS", "1") != "0"
    service = RealtimeService(config, close_stale_associations=close_stale)
    return service.run()
