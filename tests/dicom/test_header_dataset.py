"""The pipeline's cheap reading of an instance against pydicom's: the data set built from the
raw header holds the same elements as `dcmread` of the file, validation finds the same
problems on both, and fast_get gives what `Dataset.get` gives, on real-world files (many of
them odd on purpose), synthetic files and damaged ones."""
from __future__ import annotations

import io
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.datadict import keyword_for_tag

from axiom_dagster.dicom.fastvalues import fast_get
from axiom_dagster.dicom.header_dataset import header_dataset
from axiom_dagster.dicom.header_reader import read_header_bytes
from axiom_dagster.pipeline.validation import validate_instance
from tests.catalog.test_extract import REAL_WORLD
from tests.helpers import small_archive

KEYWORDS = [
    "SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "Modality", "PatientID",
    "PatientName", "StudyDate", "StudyTime", "AccessionNumber", "InstitutionName", "StudyDescription",
    "SeriesNumber", "InstanceNumber", "Rows", "Columns", "BitsAllocated", "SamplesPerPixel",
    "PhotometricInterpretation", "NumberOfFrames", "ImageType", "PixelSpacing", "Manufacturer",
    "NoSuchKeyword",
]


def _pydicom(data: bytes):
    try:
        return dcmread(io.BytesIO(data))
    except Exception:
        return None


def _outcome(fn):
    try:
        return fn()
    except Exception as exc:
        return type(exc).__name__


def _compare(data: bytes) -> bool:
    """True when the raw header reader took the file (and everything matched pydicom)."""
    try:
        header = read_header_bytes(data)
    except Exception:
        return False
    fast, slow = header_dataset(header, data), _pydicom(data)
    assert slow is not None, "the raw reader took a file pydicom cannot read"
    assert [e.tag for e in fast] == [e.tag for e in slow]
    for tag in [e.tag for e in slow]:
        mine, theirs = _outcome(lambda: fast[tag].value), _outcome(lambda: slow[tag].value)
        assert mine == theirs, keyword_for_tag(tag) or str(tag)
    assert fast.file_meta.TransferSyntaxUID == slow.file_meta.TransferSyntaxUID
    # Fresh copies: validation and fast_get must work on elements pydicom has not converted.
    fast, slow = header_dataset(header, data), _pydicom(data)
    assert validate_instance(fast, "1.2.3") == validate_instance(slow, "1.2.3")
    # The Pixel Data length from the raw header, without converting the element.
    fast = header_dataset(header, data)
    assert validate_instance(fast, "1.2.3", header=header) == validate_instance(slow, "1.2.3")
    fast, slow = header_dataset(header, data), _pydicom(data)
    for keyword in KEYWORDS:
        mine, theirs = _outcome(lambda: fast_get(fast, keyword, "-")), _outcome(lambda: slow.get(keyword, "-"))
        assert mine == theirs and str(mine) == str(theirs) and bool(mine) == bool(theirs), keyword
    return True


def test_real_world_files_read_as_pydicom_reads_them():
    taken = [path for path in REAL_WORLD if _compare(Path(path).read_bytes())]
    assert len(taken) >= 0.85 * len(REAL_WORLD), f"{len(taken)} of {len(REAL_WORLD)} read raw"


def test_synthetic_files(tmp_path):
    assert all(_compare(p.read_bytes()) for p in small_archive(tmp_path / "a", studies=1, series=2, instances=3))


@pytest.mark.parametrize("cut", [200, 400, 1000, -100, -1])
def test_truncated_files_are_left_to_pydicom_or_read_alike(tmp_path, cut):
    data = small_archive(tmp_path / "a", studies=1, series=1, instances=1)[0].read_bytes()
    damaged = data[:cut]
    if _pydicom(damaged) is None:
        with pytest.raises(Exception):
            read_header_bytes(damaged)
    else:
        _compare(damaged)


def test_validation_problems_are_found_on_the_header_dataset(tmp_path):
    """A truncated pixel data and a missing Modality: the same problems as pydicom's reading."""
    path = small_archive(tmp_path / "a", studies=1, series=1, instances=1)[0]
    ds = dcmread(path)
    del ds.Modality
    ds.PixelData = ds.PixelData[:-10]
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    data = out.getvalue()
    problems = validate_instance(header_dataset(read_header_bytes(data), data))
    assert "missing required attribute Modality" in problems
    assert any(p.startswith("pixel data truncated") for p in problems)
    assert problems == validate_instance(dcmread(io.BytesIO(data)))
    header = read_header_bytes(data)
    assert validate_instance(header_dataset(header, data), header=header) == problems


def test_character_set_and_file_meta_are_pydicom_s():
    for path in REAL_WORLD:
        data = Path(path).read_bytes()
        try:
            header = read_header_bytes(data)
        except Exception:
            continue
        fast, slow = header_dataset(header, data), dcmread(io.BytesIO(data))
        assert fast.original_character_set == slow.original_character_set, Path(path).name
        assert fast.original_encoding == slow.original_encoding, Path(path).name
        assert fast.file_meta.TransferSyntaxUID == slow.file_meta.TransferSyntaxUID, Path(path).name
