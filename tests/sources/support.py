"""Builders for source tests: an Orthanc loaded with a synthetic archive spread over
several StudyDates, and the configuration pieces pointing at it."""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from pydicom import dcmread

from axiom_dagster.config.sources import DicomwebSource, DimseSource
from axiom_dagster.ingest.landing import LandingZone
from axiom_dagster.synth import SynthSpec, generate_archive


def load_archive(orthanc, folder: Path, studies=6, series=1, instances=3, days=3, seed=5) -> dict[str, dict]:
    """Upload a synthetic archive to Orthanc; return {StudyInstanceUID: {date, sops}}."""
    paths = generate_archive(folder, SynthSpec(studies, series, instances, rows=16, columns=16, seed=seed, days=days))
    orthanc.upload_files(paths)
    return describe(paths)


def describe(paths) -> dict[str, dict]:
    out: dict[str, dict] = defaultdict(lambda: {"date": None, "sops": set()})
    for p in paths:
        ds = dcmread(p, stop_before_pixels=True)
        out[ds.StudyInstanceUID]["date"] = ds.StudyDate
        out[ds.StudyInstanceUID]["sops"].add(ds.SOPInstanceUID)
    return dict(out)


def dicomweb_source(orthanc, name="orthanc-web", **kw) -> DicomwebSource:
    return DicomwebSource(**{"name": name, "url": orthanc.dicomweb_url, **kw})


def dimse_source(orthanc, name="orthanc-dimse", **kw) -> DimseSource:
    return DimseSource(name=name, host="127.0.0.1", port=orthanc.dicom_port, remote_ae=orthanc.aet,
                       ae_title="AXIOM", **kw)


def zone_for(config, store) -> LandingZone:
    return LandingZone(config.landing_path, config.quarantine_path, store)


def ledger_sops(store) -> list[str]:
    with store.engine.connect() as conn:
        return list(conn.exec_driver_sql("SELECT sop_uid FROM ledger").scalars())
