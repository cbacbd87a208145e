"""Synthetic DICOM archives with realistic headers, deterministic by seed.

Patient → study → series → instance hierarchy, valid UIDs, a CT/MR/CR/US/DX mix, and
configurable pixel matrices. Demo, tests and benchmarks all use it.
"""
from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np
from pydicom import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, PYDICOM_IMPLEMENTATION_UID

# 2.25.<integer> UIDs (PS3.5 B.2) from a hash: deterministic and collision-free across seeds.
def synth_uid(*parts: object) -> str:
    digest = hashlib.sha256("|".join(str(p) for p in parts).encode()).digest()
    return f"2.25.{int.from_bytes(digest[:16], 'big')}"


MODALITIES = {
    # modality: (SOP Class UID, body parts, series descriptions, station prefix)
    "CT": ("1.2.840.10008.5.1.4.1.1.2", ["CHEST", "ABDOMEN", "HEAD", "PELVIS"], ["AXIAL 5mm", "CORONAL", "SCOUT"]),
    "MR": ("1.2.840.10008.5.1.4.1.1.4", ["BRAIN", "KNEE", "SPINE"], ["T1 SAG", "T2 AX", "FLAIR"]),
    "CR": ("1.2.840.10008.5.1.4.1.1.1", ["CHEST", "HAND"], ["PA", "LAT"]),
    "US": ("1.2.840.10008.5.1.4.1.1.6.1", ["ABDOMEN", "THYROID"], ["B-MODE"]),
    "DX": ("1.2.840.10008.5.1.4.1.1.1.1", ["CHEST", "FOOT"], ["AP"]),
}
MODALITY_WEIGHTS = {"CT": 0.35, "MR": 0.25, "CR": 0.15, "US": 0.1, "DX": 0.15}
INSTITUTIONS = ["St. Elsewhere General", "Riverside Imaging Center", "University Hospital North"]
FAMILY = ["Smith", "Garcia", "Müller", "Nguyen", "Okafor", "Rossi", "Kowalski", "Tanaka"]
GIVEN = ["Anna", "Ben", "Chloé", "David", "Emeka", "Fatima", "Goran", "Hana"]


@dataclass(frozen=True)
class SynthSpec:
    studies: int = 10
    series_per_study: int = 2
    instances_per_series: int = 10
    rows: int = 256
    columns: int = 256
    seed: int = 0
    start_date: date = date(2024, 1, 1)
    days: int = 30

    @property
    def instances(self) -> int:
        return self.studies * self.series_per_study * self.instances_per_series


def generate_archive(out: Path, spec: SynthSpec) -> list[Path]:
    """Write the archive under out/<PatientID>/<study>/<series>/<n>.dcm; return the paths."""
    rng = random.Random(spec.seed)
    pixels = np.random.default_rng(spec.seed)
    paths = []
    for s in range(spec.studies):
        study = _study_header(rng, spec, s)
        modality = rng.choices(list(MODALITY_WEIGHTS), weights=list(MODALITY_WEIGHTS.values()))[0]
        for r in range(spec.series_per_study):
            series = _series_header(rng, spec, s, r, modality)
            folder = out / study.PatientID / f"study{s:05d}" / f"series{r:02d}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(spec.instances_per_series):
                ds = _instance(study, series, spec, s, r, i, pixels)
                path = folder / f"{i + 1:04d}.dcm"
                ds.save_as(path, enforce_file_format=True)
                paths.append(path)
    return paths


def _study_header(rng: random.Random, spec: SynthSpec, s: int) -> Dataset:
    ds = Dataset()
    patient_no = s // 2  # two studies per patient on average: longitudinal data
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientName = f"{FAMILY[patient_no % len(FAMILY)]}^{GIVEN[(patient_no // len(FAMILY)) % len(GIVEN)]}"
    ds.PatientID = f"PAT{spec.seed:03d}{patient_no:06d}"
    birth = date(1940, 1, 1) + timedelta(days=rng.randrange(0, 365 * 70))
    ds.PatientBirthDate = birth.strftime("%Y%m%d")
    ds.PatientSex = rng.choice(["F", "M", "O"])
    study_date = spec.start_date + timedelta(days=rng.randrange(0, max(spec.days, 1)))
    ds.StudyDate = study_date.strftime("%Y%m%d")
    ds.StudyTime = f"{rng.randrange(7, 19):02d}{rng.randrange(60):02d}{rng.randrange(60):02d}"
    ds.PatientAge = f"{max(0, (study_date - birth).days // 365):03d}Y"
    ds.AccessionNumber = f"ACC{spec.seed:03d}{s:07d}"
    ds.StudyID = str(s + 1)
    ds.StudyInstanceUID = synth_uid(spec.seed, "study", s)
    ds.StudyDescription = rng.choice(["Routine", "Follow-up", "Trauma", "Screening"])
    ds.ReferringPhysicianName = f"{rng.choice(FAMILY)}^{rng.choice(GIVEN)}^^Dr."
    ds.InstitutionName = rng.choice(INSTITUTIONS)
    return ds


def _series_header(rng: random.Random, spec: SynthSpec, s: int, r: int, modality: str) -> Dataset:
    sop_class, body_parts, descriptions = MODALITIES[modality]
    ds = Dataset()
    ds.Modality = modality
    ds.SOPClassUID = sop_class
    ds.SeriesInstanceUID = synth_uid(spec.seed, "series", s, r)
    ds.SeriesNumber = r + 1
    ds.SeriesDescription = rng.choice(descriptions)
    ds.BodyPartExamined = rng.choice(body_parts)
    ds.StationName = f"{modality}{rng.randrange(1, 4):02d}"
    ds.Manufacturer = rng.choice(["ACME Medical", "Imaging Systems Inc"])
    ds.ManufacturerModelName = f"Model {modality}-{rng.randrange(100, 999)}"
    ds.SeriesDate = None
    return ds


def _instance(study, series, spec, s, r, i, pixels) -> Dataset:
    ds = Dataset()
    ds.update(study)
    ds.update(series)
    ds.SeriesDate = study.StudyDate
    ds.SeriesTime = study.StudyTime
    ds.SOPInstanceUID = synth_uid(spec.seed, "instance", s, r, i)
    ds.InstanceNumber = i + 1
    ds.ContentDate = study.StudyDate
    ds.ContentTime = study.StudyTime
    if series.Modality in ("CT", "MR"):
        ds.ImagePositionPatient = [0.0, 0.0, float(i) * 5.0]
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        ds.SliceThickness = 5.0
        ds.PixelSpacing = [0.7, 0.7]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = spec.rows
    ds.Columns = spec.columns
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.PixelData = pixels.integers(0, 4096, size=spec.rows * spec.columns, dtype=np.uint16).tobytes()

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.file_meta = meta
    return ds
