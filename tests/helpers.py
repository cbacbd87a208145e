"""Small builders shared by tests: synthetic archives, damaged files, landing."""
from __future__ import annotations

import socket
from pathlib import Path

from pydicom import dcmread

from axiom_dagster.ingest.arrival import ArrivalMeta
import yaml

from axiom_dagster.config.models import AxiomConfig, FilesystemDestination, PipelineConfig
from axiom_dagster.ingest.importer import ImportReport, iter_files
from axiom_dagster.ingest.landing import LandingZone
from axiom_dagster.store.state import StateStore
from axiom_dagster.synth import SynthSpec, generate_archive


def free_port() -> int:
    """A free TCP port on 127.0.0.1 for a peer a test starts."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def small_archive(folder: Path, studies=3, series=2, instances=4, seed=1) -> list[Path]:
    return generate_archive(folder, SynthSpec(studies, series, instances, rows=32, columns=32, seed=seed))


def truncated_copy(src: Path, dst: Path) -> Path:
    """A file whose header is intact but whose pixel data is cut short."""
    data = src.read_bytes()
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(data[: len(data) - 700])
    return dst


def retagged(src: Path, dst: Path, **attrs) -> Path:
    ds = dcmread(src)
    for key, value in attrs.items():
        setattr(ds, key, value)
    if "SOPInstanceUID" in attrs:
        ds.file_meta.MediaStorageSOPInstanceUID = attrs["SOPInstanceUID"]
    dst.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(dst)
    return dst


def new_copies(src: Path, dst: Path) -> dict[str, str]:
    """Copies of every file under `src` as new instances (fresh Study, Series and SOP Instance
    UIDs, consistently mapped): a re-send of identical bytes is a no-op by design, so tests that
    need the same content processed again use these. Returns old -> new SOP Instance UID."""
    from pydicom.uid import generate_uid

    mapping: dict[str, str] = {}
    for n, path in enumerate(sorted(p for p in src.rglob("*") if p.is_file())):
        ds = dcmread(path)
        for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
            old = getattr(ds, keyword)
            mapping.setdefault(old, generate_uid(entropy_srcs=["axiom-test-copy", old]))
            setattr(ds, keyword, mapping[old])
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        dst.mkdir(parents=True, exist_ok=True)
        ds.save_as(dst / f"{n:06d}.dcm")
    return mapping


def land_folder(config: AxiomConfig, store: StateStore, folder: Path, source="test") -> ImportReport:
    zone = LandingZone(config.landing_path, config.quarantine_path, store)
    return zone.import_files(iter_files(folder), ArrivalMeta(source=source))


def make_config(root: Path, store_url: str, **pipeline) -> AxiomConfig:
    settings = {"quiet_period_seconds": 0, "workers": 2, **pipeline}
    return AxiomConfig(
        landing={"path": root / "landing", "quarantine_path": root / "quarantine"},
        state_store={"url": store_url},
        catalog={"path": str(root / "catalog")},
        pipeline=PipelineConfig(**settings),
        destinations=[FilesystemDestination(name="archive", path=root / "routed")],
        base_dir=root,
    )


def write_config_file(config: AxiomConfig, path: Path) -> Path:
    path.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    return path
