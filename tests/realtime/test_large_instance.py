"""A large multi-frame instance is received with bounded memory: pynetdicom writes the data
set to the spool file as it arrives (chunked receive) and the service checks, hashes and
lands it from disk. The receiving process's peak RSS grows by far less than the instance.

Size: AXIOM_LARGE_INSTANCE_MB (default 300). A 2 GB run, by hand:
    AXIOM_LARGE_INSTANCE_MB=2048 .venv/bin/python -m pytest -q tests/realtime/test_large_instance.py
"""
from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from axiom_dagster.store.state import StateStore
from axiom_dagster.synth import SynthSpec, generate_archive
from axiom_dagster.ingest.rawheader import part10_layout
from tests.realtime.support import DCMTK_ENV, make_config

pytestmark = [pytest.mark.dcmtk, pytest.mark.slow]  # starts the service; moves a few hundred MB
ROOT = Path(__file__).resolve().parents[2]
STORESCU = "/usr/bin/storescu"
FRAME = 512 * 512 * 2  # 512 x 512, 16 bits


def write_multiframe(path: Path, megabytes: int) -> None:
    """A Multi-frame Grayscale Word Secondary Capture instance of about `megabytes`, written
    frame by frame (this process never holds the pixel data either)."""
    frames = max(1, megabytes * (1 << 20) // FRAME)
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7.3"
    ds.SOPInstanceUID, ds.StudyInstanceUID, ds.SeriesInstanceUID = (generate_uid() for _ in range(3))
    ds.PatientID, ds.PatientName, ds.Modality = "LARGE1", "Large^Instance", "OT"
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows = ds.Columns = 512
    ds.NumberOfFrames = frames
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.save_as(path, enforce_file_format=True)
    length = frames * FRAME
    with open(path, "ab") as fh:  # Pixel Data (7FE0,0010) OW, the last element
        fh.write(b"\xe0\x7f\x10\x00OW\x00\x00" + length.to_bytes(4, "little"))
        block = bytes(range(256)) * (FRAME // 256)
        for i in range(frames):
            fh.write(block[i % 256:] + block[:i % 256])  # every frame different


def dataset_sha256(path: Path) -> str:
    with open(path, "rb") as fh:
        offset, _ = part10_layout(fh.read(65536))
        fh.seek(offset)
        return hashlib.file_digest(fh, "sha256").hexdigest()


def peak_rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def storescu(port: int, path: Path) -> None:
    r = subprocess.run([STORESCU, "-aec", "AXIOM", "127.0.0.1", str(port), str(path)], env=DCMTK_ENV,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]


def test_large_multiframe_instance_received_with_bounded_memory(tmp_path):
    megabytes = int(os.environ.get("AXIOM_LARGE_INSTANCE_MB", "300"))
    big = tmp_path / "big.dcm"
    write_multiframe(big, megabytes)
    size = big.stat().st_size
    small = generate_archive(tmp_path / "warmup", SynthSpec(1, 1, 3, rows=256, columns=256))

    cfg, config = make_config(tmp_path)
    port = config.listeners[0].port
    env = dict(os.environ, PYTHONPATH=str(ROOT), TCP_NODELAY="1")
    proc = subprocess.Popen([sys.executable, "-m", "axiom_dagster.cli", "--config", str(cfg), "realtime"],
                            env=env, stdout=subprocess.DEVNULL, stderr=open(tmp_path / "service.log", "ab"))
    try:
        from tests.realtime.test_realtime_crash import wait_dicom

        wait_dicom(port, proc)
        for f in small:  # warm up: every code path of a C-STORE has run once
            storescu(port, f)
        before = peak_rss_kb(proc.pid)
        storescu(port, big)
        growth_mb = (peak_rss_kb(proc.pid) - before) / 1024
        print(f"instance {size / 1e6:.0f} MB; receiver peak RSS {before / 1024:.0f} MB before, "
              f"grew by {growth_mb:.1f} MB")
        assert growth_mb < min(64, size / (1 << 20) / 4), f"peak RSS grew by {growth_mb:.0f} MB"

        store = StateStore(config.state_store_url)
        rows = [r for r in store.ledger_after(0, 100) if r.sop_class_uid == "1.2.840.10008.5.1.4.1.1.7.3"]
        store.dispose()
        assert len(rows) == 1
        assert dataset_sha256(Path(rows[0].path)) == dataset_sha256(big)  # byte-identical data set
        assert not list((config.landing_path / ".dimse-spool").rglob("*.dcm"))  # nothing left behind
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        finally:
            if proc.poll() is None:
                proc.kill()
