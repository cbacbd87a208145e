"""The build's raw header path against its pydicom path: identical catalog rows (typed
columns, the DICOM JSON text, bulk data, warnings) on real-world files, synthetic files and
files built here in every encoding the raw reader takes; pydicom decides whatever the raw
path leaves to it."""
from __future__ import annotations

import os
import zlib
from datetime import datetime, timezone
from pathlib import Path

import pytest
from pydicom import Dataset, dcmread
from pydicom.dataset import FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence
from pydicom.uid import (
    ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEGBaseline8Bit, generate_uid,
)

from axiom_dagster.catalog import build
from axiom_dagster.dicom.header_reader import read_header
from tests.catalog.test_extract import REAL_WORLD
from tests.helpers import small_archive

NOW = datetime(2024, 6, 1, tzinfo=timezone.utc)


def _provenance(path) -> dict:
    return {"file_path": str(path), "file_size": os.path.getsize(path), "file_mtime": None, "received_at": NOW,
            "run_id": "run-1"}


def _pydicom(path):
    try:
        return build._pydicom_row(str(path), _provenance(path))
    except Exception as exc:
        return f"unreadable DICOM: {type(exc).__name__}"


def _compare(path) -> bool:
    """True when the raw path read the file (and gave pydicom's row), False when it left
    the file to pydicom."""
    fast = build._fast_row(str(path), os.path.getsize(path), _provenance(path))
    if fast is None:
        return False
    slow = _pydicom(path)
    if isinstance(fast, dict) and isinstance(slow, dict):
        different = sorted(k for k in fast if fast[k] != slow[k])
        assert not different, (Path(path).name, different, [(fast[k], slow[k]) for k in different][:3])
    assert fast == slow, Path(path).name
    return True


def test_real_world_files_give_pydicom_rows():
    read = [path for path in REAL_WORLD if _compare(path)]
    # The raw path must carry the common cases, not hand everything to pydicom.
    assert len(read) >= 0.85 * len(REAL_WORLD), f"{len(read)} of {len(REAL_WORLD)} read raw"


def test_synthetic_files_give_pydicom_rows(tmp_path):
    paths = small_archive(tmp_path / "a", studies=2, series=2, instances=3)
    assert all(_compare(p) for p in paths)


def _dataset(charset: str = "ISO_IR 192") -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = charset
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.StudyDate, ds.StudyTime, ds.SeriesTime = "20240119", "235960", "101112.123456"
    ds.PatientBirthDate = "1997.04.24"
    ds.AcquisitionDateTime = "20240119101112.5+0100"
    ds.Modality = "CT"
    ds.ImageType = ["ORIGINAL", "", "AXIAL"]  # an empty value: pydicom keeps it
    ds.SoftwareVersions = ["1.0", "2.0"]
    ds.PatientName = "Yamada^Tarou=山田^太郎=やまだ^たろう" if charset == "ISO_IR 192" else "Doe^John"
    ds.ReferringPhysicianName = ["Smith^A", "Jones^B"]
    ds.InstitutionName = "Hôpital Saint-Éloi" if charset in ("ISO_IR 192", "ISO_IR 100") else "Clinic"
    ds.AccessionNumber = ""
    ds.SeriesNumber = "+5"
    ds.InstanceNumber = "1.0"
    ds.PixelSpacing = ["0.5", "0.5"]
    ds.ImagePositionPatient = ["-1.5e2", "0", "12.25"]
    ds.WindowCenter = ["40", "", "400"]
    ds.SliceThickness = "1e400"  # not finite: NULL with a warning, left out of the JSON
    ds.Rows, ds.Columns = 2, 2
    ds.add_new(0x00281050 + 0, "DS", ds.WindowCenter)
    ds.add_new(0x00091010, "LO", "ACME 1.0")  # private creator
    ds.add_new(0x00091011, "US", [1, 2, 3])
    ds.add_new(0x00091012, "OB", b"\x01\x02\x03\x04")
    ds.add_new(0x00091013, "FD", float("nan"))
    ds.add_new(0x00180015, "CS", "CHEST ")
    ds.add_new(0x00280106, "US", 0)  # ambiguous VR in the dictionary (US or SS)
    ds.add_new(0x00209165, "AT", [0x00100010, 0x00100020])
    ds.add_new(0x00400555, "SQ", Sequence())  # empty sequence
    item = Dataset()
    item.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    item.ReferencedSOPInstanceUID = generate_uid()
    inner = Dataset()
    inner.CodeValue, inner.CodingSchemeDesignator, inner.CodeMeaning = "T-D3000", "SRT", "Chest"
    item.PurposeOfReferenceCodeSequence = Sequence([inner])
    item.add_new(0x00091010, "LO", "ACME 1.0")
    item.add_new(0x00091020, "OB", bytes(900))  # nested bulk data (above 768 bytes)
    ds.ReferencedImageSequence = Sequence([item, Dataset()])
    ds.add_new(0x00291010, "OB", bytes(2000))  # top-level bulk data
    ds.add_new(0x00291011, "OB", bytes(800))  # bulk by pydicom's JSON threshold only
    ds.LossyImageCompression = "00"
    return ds


def _save(ds: Dataset, path: Path, syntax, *, undefined_sequences=False, encapsulated=False) -> Path:
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = syntax
    if undefined_sequences:
        ds.ReferencedImageSequence.is_undefined_length = True
        for item in ds.ReferencedImageSequence:
            item.is_undefined_length_sequence_item = True
    if encapsulated:
        ds.SamplesPerPixel, ds.BitsAllocated, ds.PhotometricInterpretation = 1, 8, "MONOCHROME2"
        ds.PixelData = encapsulate([b"\xff\xd8fake-jpeg-frame\xff\xd9", b"\xff\xd8second\xff\xd9"])
        ds["PixelData"].VR = "OB"
        ds.NumberOfFrames = 2
    else:
        ds.add_new(0x7FE00010, "OW", bytes(8))
    ds.DataSetTrailingPadding = b"\x00" * 4 if not encapsulated else b"\x00" * 2
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian])
@pytest.mark.parametrize("undefined", [False, True], ids=["defined", "undefined"])
@pytest.mark.parametrize("charset", ["ISO_IR 192", "ISO_IR 100", "ISO 2022 IR 6\\ISO 2022 IR 87"])
def test_built_files_give_pydicom_rows(tmp_path, syntax, undefined, charset):
    path = _save(_dataset(charset), tmp_path / "x.dcm", syntax, undefined_sequences=undefined)
    assert _compare(path), "the raw reader takes this encoding"
    row = build._fast_row(str(path), os.path.getsize(path), _provenance(path))
    assert row["slice_thickness"] is None and any(w.startswith("SliceThickness") for w in row["warnings"])


def test_encapsulated_pixel_data_and_its_length(tmp_path):
    path = _save(_dataset(), tmp_path / "jpeg.dcm", JPEGBaseline8Bit, encapsulated=True)
    assert _compare(path)
    row = build._fast_row(str(path), os.path.getsize(path), _provenance(path))
    assert row["pixel_data_length"] == len(dcmread(path).PixelData)


def _bytes_variant(tmp_path, name: str, change) -> Path:
    src = _save(_dataset(), tmp_path / "src.dcm", ExplicitVRLittleEndian)
    path = tmp_path / name
    path.write_bytes(change(src.read_bytes()))
    return path


@pytest.mark.parametrize("name,change", [
    ("trailing.dcm", lambda b: b + b"\x00\x00\x00"),  # pydicom stops silently: its reading
    ("truncated.dcm", lambda b: b[:-3]),
    ("no_preamble.dcm", lambda b: b[128:]),
    ("header_cut.dcm", lambda b: b[:400]),
])
def test_damaged_files_are_left_to_pydicom(tmp_path, name, change):
    path = _bytes_variant(tmp_path, name, change)
    assert build._fast_row(str(path), os.path.getsize(path), _provenance(path)) is None


def test_deflated_files_are_left_to_pydicom(tmp_path):
    src = _save(_dataset(), tmp_path / "src.dcm", ExplicitVRLittleEndian)
    ds = dcmread(src)
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.1.99"
    path = tmp_path / "deflated.dcm"
    ds.save_as(path, enforce_file_format=True)
    assert build._fast_row(str(path), os.path.getsize(path), _provenance(path)) is None
    assert isinstance(_pydicom(path), dict)
    assert zlib  # deflate is pydicom's


def test_the_reader_keeps_bulk_data_unread(tmp_path):
    path = _save(_dataset(), tmp_path / "x.dcm", ExplicitVRLittleEndian)
    header = read_header(str(path))
    assert header.elements[0x7FE00010][2] is None and header.elements[0x7FE00010][4] == 8
    assert header.elements[0x00291010][2] is None and header.elements[0x00291010][4] == 2000
    assert header.elements[0x00291011][2] == bytes(800)  # at most 1024 bytes: read, as pydicom does


def test_extract_chunk_is_the_same_with_and_without_the_raw_reader(tmp_path, monkeypatch):
    paths = small_archive(tmp_path / "a", studies=1, series=1, instances=3)
    paths.append(_save(_dataset(), tmp_path / "built.dcm", ImplicitVRLittleEndian, undefined_sequences=True))
    (tmp_path / "not-dicom.txt").write_text("hello")
    paths.append(tmp_path / "not-dicom.txt")
    files = [(str(p), os.path.getsize(p), 1_700_000_000_000_000) for p in paths]
    raw = build.extract_chunk(files, "run-1", NOW)
    monkeypatch.setattr(build, "_fast_row", lambda *args: None)
    slow = build.extract_chunk(files, "run-1", NOW)
    assert slow[:2] == raw[:2]
    assert len(raw[1]) == 1
    assert (raw[2], slow[2]) == (1, 5)  # the text file: pydicom tries it after the raw reader


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian])
@pytest.mark.parametrize("undefined", [False, True], ids=["defined", "undefined"])
def test_sequences_are_rendered_from_their_bytes_as_pydicom_renders_them(tmp_path, syntax, undefined):
    from axiom_dagster.catalog.extract import _bulk_marker
    from axiom_dagster.catalog.fast_extract import _charset_codec
    from axiom_dagster.catalog.sequence_json import sequence_json
    from axiom_dagster.dicom.fastvalues import Fallback
    from axiom_dagster.dicom.header_reader import CHARSET, UNDEFINED

    ds = _dataset()
    if syntax == ImplicitVRLittleEndian:  # private elements in items: pydicom's private dictionary
        for item in ds.ReferencedImageSequence:
            for tag in [t for t in item.keys() if t.group & 1]:
                del item[tag]
    path = _save(ds, tmp_path / "x.dcm", syntax, undefined_sequences=undefined)
    header = read_header(str(path))
    codec = _charset_codec(header.elements[CHARSET][2], header.implicit, header.little)
    expected = dcmread(path)
    for tag in (0x00081140, 0x00400555):  # with nested items and bulk data; empty
        _vr, length, value, _tell, _size = header.elements[tag]
        got = sequence_json(value or b"", length == UNDEFINED, header.implicit, header.little, codec)
        assert got == expected[tag].to_json_dict(_bulk_marker, 1024)
    with pytest.raises(Fallback):  # bytes that do not parse to the end
        sequence_json(header.elements[0x00081140][2] + b"\x00" * 8, False, header.implicit, header.little, codec)
