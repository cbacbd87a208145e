"""Validation of a received instance before anything is changed or sent.

Returns problems as plain sentences; an empty list means the instance may go on.
"""
from __future__ import annotations

from pydicom import Dataset

from axiom_dagster.dicom.uids import is_valid_uid

# Type 1 attributes of the SOP Common, General Study, General Series modules that routing,
# cataloging and de-identification rely on.
REQUIRED = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "Modality")
UID_ATTRIBUTES = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")
_NATIVE_SYNTAXES = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2"}


def validate_instance(ds: Dataset, expected_sop_uid: str | None = None) -> list[str]:
    problems = [f"missing required attribute {name}" for name in REQUIRED if not ds.get(name)]
    for name in UID_ATTRIBUTES:
        value = ds.get(name)
        if value and not is_valid_uid(str(value)):
            problems.append(f"{name} is not a valid UID")
    if expected_sop_uid and ds.get("SOPInstanceUID") and str(ds.SOPInstanceUID) != expected_sop_uid:
        problems.append("SOPInstanceUID differs from the one recorded at landing")
    problems += _pixel_data_problems(ds)
    return problems


def _pixel_data_problems(ds: Dataset) -> list[str]:
    """Native (uncompressed) pixel data must be as long as its image attributes say."""
    if "PixelData" not in ds:
        return []
    syntax = str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "") or "")
    if syntax not in _NATIVE_SYNTAXES:
        return []  # encapsulated: fragment lengths are checked by the parser
    try:
        expected = (
            int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel", 1))
            * int(ds.get("NumberOfFrames", 1) or 1) * int(ds.BitsAllocated)
        )
    except (AttributeError, TypeError, ValueError):
        return ["pixel data present but Rows, Columns or BitsAllocated missing or invalid"]
    expected_bytes = (expected + 7) // 8
    actual = len(ds.PixelData)
    if actual < expected_bytes:
        return [f"pixel data truncated: {actual} bytes, image attributes need {expected_bytes}"]
    return []
