"""Validation of a received instance before anything is changed or sent.

Returns problems as plain sentences; an empty list means the instance may go on. Values are
read with fast_get (pydicom's values, decoded from the raw bytes where that is simple).
"""
from __future__ import annotations

from pydicom import Dataset

from axiom_dagster.dicom.fastvalues import fast_get
from axiom_dagster.dicom.header_reader import UNDEFINED, RawHeader
from axiom_dagster.dicom.uids import is_valid_uid

# Type 1 attributes of the SOP Common, General Study, General Series modules that routing,
# cataloging and de-identification rely on.
REQUIRED = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "Modality")
UID_ATTRIBUTES = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")
# Deflated: the data set is compressed, the pixel data inside it is native.
_NATIVE_SYNTAXES = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99"}
_PIXEL_DATA = 0x7FE00010


def validate_instance(ds: Dataset, expected_sop_uid: str | None = None, header: RawHeader | None = None) -> list[str]:
    """`header`: the raw header `ds` was built from (dicom/header_dataset.py), when it was:
    the Pixel Data length is then taken from it instead of from the converted element."""
    values = {name: fast_get(ds, name) for name in REQUIRED}
    problems = [f"missing required attribute {name}" for name in REQUIRED if not values[name]]
    for name in UID_ATTRIBUTES:
        value = values[name]
        if value and not is_valid_uid(str(value)):
            problems.append(f"{name} is not a valid UID")
    if expected_sop_uid and values["SOPInstanceUID"] and str(values["SOPInstanceUID"]) != expected_sop_uid:
        problems.append("SOPInstanceUID differs from the one recorded at landing")
    problems += _pixel_data_problems(ds, header)
    return problems


def _pixel_data_problems(ds: Dataset, header: RawHeader | None = None) -> list[str]:
    """Native (uncompressed) pixel data must be as long as its image attributes say.

    Only image objects carry Pixel Data: SR, waveforms, RT plans, presentation states, KOS,
    encapsulated documents and pixel-stripped images have none and pass. Encapsulated
    (compressed) pixel data is checked by its codec, not here; YBR_FULL_422 stores two
    samples per pixel instead of three (PS3.3 C.7.6.3.1.2).
    """
    raw = header.elements.get(_PIXEL_DATA) if header is not None else None
    if raw is not None and raw[2] is None and raw[1] and raw[1] != UNDEFINED:
        # Bulk value the header reader left in the file: its length as header_dataset slices it.
        if header.transfer_syntax not in _NATIVE_SYNTAXES:
            return []
        actual = min(raw[4], header.size - raw[3])
    else:
        if "PixelData" not in ds:
            return []
        meta = getattr(ds, "file_meta", None)
        syntax = str(meta.get("TransferSyntaxUID", "") or "") if meta is not None else ""
        if syntax not in _NATIVE_SYNTAXES or ds["PixelData"].is_undefined_length:
            return []
        actual = None
    try:
        samples = int(fast_get(ds, "SamplesPerPixel", 1) or 1)
        if samples == 3 and str(fast_get(ds, "PhotometricInterpretation", "")).strip() == "YBR_FULL_422":
            samples = 2
        expected = (
            int(_required(ds, "Rows")) * int(_required(ds, "Columns")) * samples
            * int(fast_get(ds, "NumberOfFrames", 1) or 1) * int(_required(ds, "BitsAllocated"))
        )
    except Exception:  # missing, or a value pydicom cannot convert
        return ["pixel data present but Rows, Columns, SamplesPerPixel, NumberOfFrames or BitsAllocated missing or invalid"]
    expected_bytes = (expected + 7) // 8
    if actual is None:
        actual = len(ds.PixelData)
    if actual < expected_bytes:
        return [f"pixel data truncated: {actual} bytes, image attributes need {expected_bytes}"]
    return []


def _required(ds: Dataset, keyword: str):
    value = fast_get(ds, keyword, _MISSING)
    if value is _MISSING:
        raise AttributeError(keyword)  # as ds.<keyword> raises
    return value


_MISSING = object()
