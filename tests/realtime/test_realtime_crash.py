"""The realtime service as a subprocess: SIGKILL mid-association loses nothing acknowledged;
SIGTERM finishes the association in flight."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pydicom import dcmread

from axiom_dagster.store.state import StateStore
from axiom_dagster.synth import SynthSpec, generate_archive
from tests.realtime.support import DCMTK_ENV, dataset_bytes, make_config

pytestmark = [pytest.mark.dcmtk, pytest.mark.slow]  # each test starts and kills the service
ROOT = Path(__file__).resolve().parents[2]


def start_service(cfg: Path, log: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT), AXIOM_CONFIG=str(cfg))
    proc = subprocess.Popen([sys.executable, "-m", "axiom_dagster.cli", "--config", str(cfg), "realtime"],
                            env=env, stdout=subprocess.DEVNULL, stderr=open(log, "ab"))
    return proc


def wait_dicom(port: int, proc: subprocess.Popen, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "service exited during start"
        r = subprocess.run(["/usr/bin/echoscu", "-aec", "AXIOM", "127.0.0.1", str(port)], env=DCMTK_ENV, capture_output=True)
        if r.returncode == 0:
            return
        time.sleep(0.2)
    raise AssertionError("service did not start")


def storescu_streaming(port: int, folder: Path):
    return subprocess.Popen(["/usr/bin/storescu", "-v", "-aec", "AXIOM", "+sd", "+r", "127.0.0.1", str(port), str(folder)],
                            env=DCMTK_ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def acknowledged(lines: list[str]) -> list[Path]:
    """Files storescu reported as stored: 'Sending file: X' followed by a Success response."""
    done, current = [], None
    for line in lines:
        m = re.match(r"I: Sending file: (.*)$", line.rstrip())
        if m:
            current = Path(m.group(1))
        elif "Received Store Response (Success" in line and current is not None:
            done.append(current)
            current = None
    return done


def test_sigkill_midway_loses_no_acknowledged_instance(tmp_path):
    cfg, config = make_config(tmp_path)
    port = config.listeners[0].port
    generate_archive(tmp_path / "src", SynthSpec(studies=5, series_per_study=4, instances_per_series=25, rows=64, columns=64))
    log = tmp_path / "service.log"
    proc = start_service(cfg, log)
    try:
        wait_dicom(port, proc)
        sender = storescu_streaming(port, tmp_path / "src")
        lines, successes = [], 0
        for line in sender.stderr:
            lines.append(line)
            if "Received Store Response (Success" in line:
                successes += 1
                if successes == 200:
                    os.kill(proc.pid, signal.SIGKILL)
                    break
        lines.extend(sender.stderr.read().splitlines())
        sender.wait(30)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    acked = acknowledged(lines)
    assert 200 <= len(acked) < 500
    assert sender.returncode != 0  # the sender saw the connection drop

    proc = start_service(cfg, log)  # restart: recovery closes the dead association, sweeps temp files
    try:
        wait_dicom(port, proc)
        store = StateStore(config.state_store_url)
        rows = {r.sop_uid: r for r in store.ledger_after(0, 10_000)}
        for src in acked:
            sop = dcmread(src, stop_before_pixels=True).SOPInstanceUID
            assert sop in rows, f"acknowledged {src.name} missing from the ledger"
            landed = Path(rows[sop].path)
            dcmread(landed)  # parses
            assert dataset_bytes(landed) == dataset_bytes(src)
        assert len(rows) >= len(acked)
        assert not list((tmp_path / "landing").rglob("*.tmp"))
        assocs = {r.association_id for r in rows.values()}
        assert store.open_associations(assocs) == set()
        # the restarted service takes the rest
        sender = subprocess.run(["/usr/bin/storescu", "-aec", "AXIOM", "+sd", "+r", "127.0.0.1", str(port), str(tmp_path / "src")],
                                env=DCMTK_ENV, capture_output=True, text=True, timeout=120)
        assert sender.returncode == 0, sender.stderr
        assert len({r.sop_uid for r in store.ledger_after(0, 10_000)}) == 500
        store.dispose()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


def test_sigkill_with_concurrent_associations_loses_no_acknowledged_instance(tmp_path):
    """Three associations at once (ledger rows committed in groups): kill -9 midway; every
    instance any sender saw acknowledged is in the ledger with its file intact."""
    import threading

    cfg, config = make_config(tmp_path)
    port = config.listeners[0].port
    folders = []
    for k in range(3):
        folders.append(tmp_path / f"src{k}")
        generate_archive(folders[-1], SynthSpec(studies=2, series_per_study=2, instances_per_series=50, rows=64, columns=64,
                                                seed=k + 11))
    log = tmp_path / "service.log"
    proc = start_service(cfg, log)
    lines: list[list[str]] = [[] for _ in folders]
    successes = [0]
    lock = threading.Lock()
    try:
        wait_dicom(port, proc)
        senders = [storescu_streaming(port, f) for f in folders]

        def read(k):
            for line in senders[k].stderr:
                lines[k].append(line)
                if "Received Store Response (Success" in line:
                    with lock:
                        successes[0] += 1
                        if successes[0] == 300 and proc.poll() is None:
                            os.kill(proc.pid, signal.SIGKILL)

        readers = [threading.Thread(target=read, args=(k,)) for k in range(len(folders))]
        for t in readers:
            t.start()
        for t in readers:
            t.join(60)
        for s in senders:
            s.wait(30)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    acked = [p for per_sender in lines for p in acknowledged(per_sender)]
    assert 300 <= len(acked) < 600
    store = StateStore(config.state_store_url)
    rows = {r.sop_uid: r for r in store.ledger_after(0, 10_000)}
    for src in acked:
        sop = dcmread(src, stop_before_pixels=True).SOPInstanceUID
        assert sop in rows, f"acknowledged {src.name} missing from the ledger"
        assert dataset_bytes(Path(rows[sop].path)) == dataset_bytes(src)
    store.dispose()


def test_sigterm_finishes_association_in_flight(tmp_path):
    cfg, config = make_config(tmp_path)
    port = config.listeners[0].port
    generate_archive(tmp_path / "src", SynthSpec(studies=2, series_per_study=2, instances_per_series=50, rows=64, columns=64))
    log = tmp_path / "service.log"
    proc = start_service(cfg, log)
    try:
        wait_dicom(port, proc)
        sender = storescu_streaming(port, tmp_path / "src")
        successes = 0
        lines = []
        for line in sender.stderr:
            lines.append(line)
            if "Received Store Response (Success" in line:
                successes += 1
                if successes == 20:
                    proc.send_signal(signal.SIGTERM)
                    break
        lines.extend(sender.stderr.read().splitlines())
        assert sender.wait(60) == 0, "".join(lines[-20:])
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert len(acknowledged(lines)) == 200
    store = StateStore(config.state_store_url)
    assert store.ledger_count() == 200
    assocs = {r.association_id for r in store.ledger_after(0, 1000)}
    assert len(assocs) == 1 and store.open_associations(assocs) == set()
    # new associations are refused once shutdown started (the service is gone now)
    r = subprocess.run(["/usr/bin/echoscu", "-aec", "AXIOM", "127.0.0.1", str(port)], env=DCMTK_ENV, capture_output=True)
    assert r.returncode != 0
    assert b"shutting down" in log.read_bytes()
