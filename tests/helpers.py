"""Small builders shared by tests: synthetic archives, damaged files, landing."""
from __future__ import annotations

from pathlib import Path

from pydicom import dcmread

from axiom_dagster.arrival import ArrivalMeta
from axiom_dagster.config import AxiomConfig
from axiom_dagster.landing import ImportReport, LandingZone, iter_files
from axiom_dagster.state import StateStore
from axiom_dagster.synth import SynthSpec, generate_archive


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


def land_folder(config: AxiomConfig, store: StateStore, folder: Path, source="test") -> ImportReport:
    zone = LandingZone(config.landing_path, config.quarantine_path, store)
    return zone.import_files(iter_files(folder), ArrivalMeta(source=source))
