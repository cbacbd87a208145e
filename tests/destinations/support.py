"""Builders for delivery tests: a configuration with network destinations, and a landed,
processed batch whose copies wait in the staging folder as pending deliveries."""
from __future__ import annotations

import io
import shutil
from pathlib import Path

from pydicom import dcmread
from pydicom.data import get_testdata_file

from axiom_dagster.config.models import AxiomConfig, PipelineConfig
from axiom_dagster.pipeline.run import BatchResult, run_batch
from axiom_dagster.store.state import StateStore
from tests.helpers import land_folder, small_archive

# Due again at once (tests never wait); a day before giving up.
FAST_RETRY = {"initial_seconds": 0, "jitter": False, "max_age_seconds": 86_400}
# Real-world files of other SOP classes and transfer syntaxes (pydicom's own test files).
REAL_WORLD = ["CT_small.dcm", "JPEG2000.dcm", "MR_small_bigendian.dcm", "SC_rgb_rle.dcm"]


def delivery_config(root: Path, store_url: str, destinations: list[dict]) -> AxiomConfig:
    return AxiomConfig(
        landing={"path": root / "landing", "quarantine_path": root / "quarantine"},
        state_store={"url": store_url},
        catalog={"path": str(root / "catalog")},
        pipeline=PipelineConfig(quiet_period_seconds=0, workers=1),
        destinations=destinations,
        # Kept so tests can compare what was sent with what arrived.
        delivery={"staging_path": root / "outbox", "keep_confirmed_copies": True},
        base_dir=root,
    )


def input_folder(root: Path, studies=2, series=2, instances=3, real_world=True) -> Path:
    folder = root / "in"
    small_archive(folder / "synth", studies=studies, series=series, instances=instances)
    if real_world:
        for name in REAL_WORLD:
            shutil.copy(get_testdata_file(name, download=False), folder / name)
    return folder


def process(config: AxiomConfig, store: StateStore, folder: Path, run_id="run-1") -> BatchResult:
    """Land `folder` and run the pipeline over it: copies staged, deliveries pending."""
    report = land_folder(config, store, folder)
    assert not report.rejected
    rows = store.ledger_after(0, 1_000_000)
    store.note_arrivals(rows)
    batch = store.create_batch("2024-01-01", sorted({r.study_uid for r in rows}))
    result = run_batch(config, store, batch.id, run_id)
    assert not result.stage_failures, result.stage_failures
    return result


def staged(root: Path, destinations: list[dict], folder: Path | None = None, **archive) -> tuple[AxiomConfig, StateStore]:
    """A configuration with these destinations and a processed batch: every copy pending."""
    config = delivery_config(root, f"sqlite:///{root / 'state.db'}", destinations)
    store = StateStore(config.state_store_url)
    store.migrate()
    process(config, store, folder or input_folder(root, **archive))
    return config, store


def dataset_bytes(data: bytes) -> bytes:
    """The encoded data set after the File Meta Information."""
    from pydicom.filereader import _read_file_meta_info, read_preamble

    fp = io.BytesIO(data)
    read_preamble(fp, False)
    _read_file_meta_info(fp)
    return fp.read()


def sop_uid(path: Path) -> str:
    return str(dcmread(path, stop_before_pixels=True).SOPInstanceUID)


def assert_identical_in_orthanc(orthanc, rows: list[dict]) -> None:
    """Each sent data set is in Orthanc: byte-identical after the File Meta Information, or,
    where Orthanc (DCMTK) re-encoded it (undefined-length sequences get explicit lengths),
    element-for-element equal."""
    reencoded = 0
    for r in rows:
        sent = Path(r["source_path"]).read_bytes()
        stored = orthanc.file_by_sop_uid(r["sop_uid"])
        if dataset_bytes(stored) != dataset_bytes(sent):
            assert dcmread(io.BytesIO(stored)) == dcmread(io.BytesIO(sent)), Path(r["source_path"]).name
            reencoded += 1
    assert reencoded <= len(rows) // 2  # most files are stored exactly as sent
