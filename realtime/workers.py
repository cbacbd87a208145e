"""`axiom realtime --workers N`: N listener worker processes serving the same DICOM and HTTP
ports, all landing into one landing zone and one arrival ledger.

The supervisor (this process) migrates the state store and recovers from a previous crash
once (closes associations left open, deletes half-written temp files), then listens on the
DICOM ports and hands each connection to the worker with the fewest open associations
(realtime/handoff.py); the workers share the HTTP port (SO_REUSEPORT). It starts the workers
(`python -m realtime.workers CONFIG INDEX LEVEL CHANNEL_FDS`) and restarts any that dies. Each
worker acknowledges an instance only after its file and ledger row are durable, exactly as
the single-process service does, so a worker killed with SIGKILL loses nothing it
acknowledged; its in-flight associations are aborted and the senders retry. New
connections go to the live workers only.
"""
from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from axiom_dagster.config.models import AxiomConfig
from axiom_dagster.store.state import StateStore

from .handoff import Dispatcher
from .logs import setup_logging
from .service import RealtimeService, close_stale_associations, sweep_temp_files
from .stow import SOURCE as STOW_SOURCE

log = logging.getLogger("axiom.realtime.supervisor")
RESTART_DELAY = 1.0


WORKERS_PER_CORE = 2


def default_worker_count(state_store_url: str) -> int:
    """`axiom realtime` without --workers: two listener processes per core on PostgreSQL; 1
    on SQLite, whose writers share one file lock (there 1 process did better than 2). Two per
    core because an association spends much of each request waiting for its file and ledger
    row to be flushed, and associations in one process share its GIL: on 2 cores with 4
    associations, 4 workers took 729-812 inst/s against 625-661 for 2 (bench/ingest.py,
    2026-12-02). Each worker holds ~125 MB. A CPU quota (Kubernetes limits) is not seen
    here: pass --workers there."""
    if state_store_url.startswith("sqlite"):
        return 1
    if hasattr(os, "sched_getaffinity"):  # the cores this process may run on (cpusets, taskset)
        cores = len(os.sched_getaffinity(0))
    else:
        cores = os.cpu_count() or 1
    return WORKERS_PER_CORE * max(1, cores)


class Supervisor:
    def __init__(self, config: AxiomConfig, config_path: str | Path | None, workers: int, log_level: str = "INFO"):
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self.config = config
        self.config_path = str(config_path or "")
        self.count = workers
        self.log_level = log_level
        self.workers: dict[int, subprocess.Popen] = {}
        self.dispatcher: Dispatcher | None = None
        self._stopping = threading.Event()

    def recover(self) -> None:
        store = StateStore(self.config.state_store_url)
        try:
            store.migrate()
            sources = [lc.name for lc in self.config.listeners] + [STOW_SOURCE]
            closed = close_stale_associations(store, sources)
        finally:
            store.dispose()
        removed = sweep_temp_files(self.config.landing_path)
        if closed or removed:
            log.warning("recovered from a previous run", extra={"associations": closed, "temp_files": removed})

    def _spawn(self, index: int) -> None:
        ends = self.dispatcher.attach(index)
        fds = [end.fileno() for end in ends]
        cmd = [sys.executable, "-m", "realtime.workers", self.config_path, str(index), self.log_level,
               ",".join(map(str, fds))]
        try:
            self.workers[index] = subprocess.Popen(cmd, env=os.environ.copy(), pass_fds=fds)
        finally:
            for end in ends:
                end.close()
        log.info("listener worker started", extra={"worker": index, "pid": self.workers[index].pid})

    def pids(self) -> dict[int, int]:
        return {i: p.pid for i, p in self.workers.items() if p.poll() is None}

    def run(self) -> int:
        self.recover()
        self.dispatcher = Dispatcher(self.config.listeners)
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            self.dispatcher.start()
            for i in range(self.count):
                self._spawn(i)
            while not self._stopping.wait(0.5):
                for i, proc in list(self.workers.items()):
                    code = proc.poll()
                    if code is not None and not self._stopping.is_set():
                        log.error("listener worker died; restarting it",
                                  extra={"worker": i, "pid": proc.pid, "exit": code})
                        time.sleep(RESTART_DELAY)
                        self._spawn(i)
        finally:
            self.dispatcher.stop_accepting()
            self._stop_workers()
            self.dispatcher.close()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return 0

    def _on_signal(self, signum, _frame) -> None:
        if self._stopping.is_set():  # second signal: pass it on (the workers abort)
            for proc in self.workers.values():
                if proc.poll() is None:
                    proc.send_signal(signum)
            return
        log.info("shutting down workers", extra={"signal": signal.Signals(signum).name})
        self._stopping.set()

    def _stop_workers(self) -> None:
        for proc in self.workers.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.config.http.shutdown_grace_seconds + 10
        for proc in self.workers.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.info("realtime supervisor stopped")


def _stop_when_orphaned(supervisor: int) -> None:
    """The supervisor died without stopping this worker (no connections come any more):
    finish the open associations and exit, as on SIGTERM."""
    while os.getppid() == supervisor:
        time.sleep(1)
    log.error("supervisor gone: stopping this listener worker")
    signal.raise_signal(signal.SIGTERM)


def worker_main(argv: list[str]) -> int:
    from axiom_dagster.config.settings import load_default_config

    config_path, index, level, fds = argv
    setup_logging(level)
    config = load_default_config(config_path or None)
    channels = [socket.socket(fileno=int(fd)) for fd in fds.split(",") if fd]
    log.info("listener worker serving", extra={"worker": int(index), "pid": os.getpid()})
    threading.Thread(target=_stop_when_orphaned, args=(os.getppid(),), daemon=True).start()
    service = RealtimeService(config, channels=channels)
    return service.run()


if __name__ == "__main__":
    sys.exit(worker_main(sys.argv[1:]))
