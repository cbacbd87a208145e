"""`axiom realtime --workers 3`: three listener processes on one port (handed over by the supervisor), eight
concurrent DCMTK storescu associations, one worker killed with SIGKILL mid-transfer. Every
acknowledged instance is in the ledger exactly once with its data set intact, the other
workers keep serving, and the supervisor replaces the dead worker."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from pydicom import dcmread

from axiom_dagster.store.state import StateStore
from axiom_dagster.synth import SynthSpec, generate_archive
from tests.realtime.support import DCMTK_ENV, dataset_bytes, make_config

STORESCU = "/usr/bin/storescu"
pytestmark = pytest.mark.skipif(not Path(STORESCU).exists(), reason="DCMTK not installed")
ROOT = Path(__file__).resolve().parents[2]


def _send(port: int, folder: Path) -> subprocess.Popen:
    return subprocess.Popen([STORESCU, "-v", "-aec", "AXIOM", "+sd", "+r", "127.0.0.1", str(port), str(folder)],
                            env=DCMTK_ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _acknowledged(output: str) -> list[Path]:
    """Files whose C-STORE response was Success, from `storescu -v` output."""
    acked, current = [], None
    for line in output.splitlines():
        if m := re.search(r"Sending file: (.+)$", line):
            current = Path(m.group(1).strip())
        elif "Received Store Response (Success)" in line and current is not None:
            acked.append(current)
            current = None
    return acked


def _log_events(path: Path, msg: str) -> list[dict]:
    events = []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("msg") == msg:
                events.append(event)
    return events


def _wait(predicate, timeout=60, what="condition"):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def test_workers_share_the_port_and_a_killed_worker_loses_nothing_acknowledged(tmp_path, store_url):
    config_file, config = make_config(tmp_path, state_store={"url": store_url})
    port = config.listeners[0].port
    folders = []
    for i in range(8):
        folder = tmp_path / f"send{i}"
        generate_archive(folder, SynthSpec(1, 1, 50, rows=256, columns=256, seed=100 + i))
        folders.append(folder)
    log_file = tmp_path / "service.log"
    supervisor = subprocess.Popen(
        [sys.executable, "-m", "axiom_dagster.cli", "realtime", "--config", str(config_file), "--workers", "3"],
        cwd=ROOT, env={**os.environ, "TCP_NODELAY": "1"}, stdout=subprocess.DEVNULL, stderr=log_file.open("wb"),
    )
    try:
        _wait(lambda: len({e["pid"] for e in _log_events(log_file, "realtime service ready")}) == 3, 120, "3 workers")
        workers = {e["pid"] for e in _log_events(log_file, "realtime service ready")}
        assert httpx.get(f"http://127.0.0.1:{config.http.port}/health").status_code == 200

        senders = [_send(port, f) for f in folders]
        # Kill a worker that is serving an association, once instances are arriving.
        _wait(lambda: _log_events(log_file, "association established"), 60, "an association")
        store = StateStore(config.state_store_url)
        _wait(lambda: store.ledger_count() >= 40, 60, "40 instances")
        victim = _log_events(log_file, "association established")[0]["pid"]
        os.kill(victim, signal.SIGKILL)
        outputs = [p.communicate(timeout=300)[0] for p in senders]

        # The supervisor spread the associations over several workers.
        served_by = {e["pid"] for e in _log_events(log_file, "association established")}
        assert len(served_by & workers) >= 2
        # Associations on the other workers completed.
        assert sum(p.returncode == 0 for p in senders) >= 1

        acked = [path for out in outputs for path in _acknowledged(out)]
        assert acked, "no instance was acknowledged"
        rows = store.ledger_after(0, 100_000)
        by_sop: dict[str, list] = {}
        for row in rows:
            by_sop.setdefault(row.sop_uid, []).append(row)
        for path in acked:
            sop = str(dcmread(path, stop_before_pixels=True).SOPInstanceUID)
            assert len(by_sop.get(sop, [])) == 1, f"acknowledged instance {path.name} is in the ledger {len(by_sop.get(sop, []))} times"
            assert dataset_bytes(by_sop[sop][0].path) == dataset_bytes(path)
        # Nothing was recorded twice, acknowledged or not.
        assert all(len(v) == 1 for v in by_sop.values())

        # The supervisor replaced the dead worker; a new sender is served in full.
        _wait(lambda: len({e["pid"] for e in _log_events(log_file, "realtime service ready")}) == 4, 120, "a new worker")
        again = tmp_path / "again"
        generate_archive(again, SynthSpec(1, 1, 20, rows=64, columns=64, seed=999))
        late = _send(port, again)
        assert late.wait(120) == 0
        assert len(_acknowledged(late.stdout.read())) == 20
        store.dispose()
    finally:
        supervisor.send_signal(signal.SIGTERM)
        try:
            assert supervisor.wait(60) == 0
        finally:
            if supervisor.poll() is None:
                supervisor.kill()
