"""Catalog rows against pydicom: typed columns, the DICOM JSON column, damaged values."""
from __future__ import annotations

import copy
import json
from datetime import date, datetime, time
from pathlib import Path

import pydicom
import pytest
from pydicom import Dataset, dcmread
from pydicom.data import get_testdata_file
from pydicom.multival import MultiValue
from pydicom.valuerep import DA, DT, TM

from axiom_dagster.catalog.extract import PIXEL_DATA_TAGS, instance_row
from axiom_dagster.catalog.schema import ATTRIBUTES, INSTANCE_SCHEMA
from tests.helpers import small_archive


def real_world_files() -> list[str]:
    """pydicom's own test files and the pydicom-data package (offline, never downloaded)."""
    import data_store  # the pydicom-data package

    folders = [Path(pydicom.data.__file__).parent / "test_files", Path(data_store.__file__).parent / "data"]
    names = sorted({p.name for folder in folders for p in folder.glob("*.dcm")})
    paths = [get_testdata_file(name, download=False) for name in names]
    return [p for p in paths if p]


def _readable(path) -> Dataset | None:
    try:
        ds = dcmread(path)
        ds.SOPInstanceUID, ds.StudyInstanceUID  # noqa: B018
        return ds
    except Exception:
        return None


def _expected(ds: Dataset, keyword: str, kind: str):
    """pydicom's value for a column, converted the obvious way (None when pydicom can't)."""
    if keyword not in ds:
        return None
    try:
        value = ds[keyword].value
    except Exception:
        return None
    values = list(value) if isinstance(value, MultiValue) else ([] if value in (None, "") else [value])
    if not values:
        return None
    try:
        if kind == "text":
            return "\\".join(str(v) for v in values)
        if kind == "texts":
            return [str(v) for v in values]
        if kind == "floats":
            return [float(v) for v in values]
        if len(values) > 1:
            return None
        (v,) = values
        if kind == "int":
            return int(v)
        if kind == "float":
            return float(v)
        if kind == "date":
            d = DA(str(v))
            return date(d.year, d.month, d.day)
        if kind == "time":
            t = TM(str(v))
            return time(t.hour, t.minute, t.second, t.microsecond)
        if kind == "datetime":
            d = DT(str(v))
            return datetime(d.year, d.month, d.day, d.hour, d.minute, d.second, d.microsecond)
    except Exception:
        return None
    raise AssertionError(kind)


def _without_bulk(ds: Dataset, bulk: list[dict]) -> Dataset:
    """The data set minus the bulk data the row lists (checking each one's VR and length)."""
    ds = copy.deepcopy(ds)
    for entry in bulk:
        *items, last = entry["path"].split(".")
        where = ds
        for step in items:
            tag, index = step[:8], int(step[9:-1])
            where = where[int(tag, 16)].value[index]
        elem = where[int(last, 16)]
        assert entry["vr"] in ("OB", "OD", "OF", "OL", "OV", "OW", "UN"), entry
        if elem.value is not None and entry["length"] is not None:
            assert entry["length"] == len(elem.value), entry
        del where[elem.tag]
    return ds


def _check_row(path, ds: Dataset) -> None:
    row = instance_row(dcmread(path, defer_size=1024), file_path=str(path))
    assert set(row) == set(INSTANCE_SCHEMA)
    for attr in ATTRIBUTES:
        expected = _expected(ds, attr.keyword, attr.kind)
        got = row[attr.column]
        if isinstance(expected, list) and expected and isinstance(expected[0], float):
            assert got == pytest.approx(expected), (path, attr.column)
        else:
            assert got == expected, (path, attr.column, got, expected)
    parsed = Dataset.from_json(row["dicom_json"])
    original = _without_bulk(ds, row["bulk_data"])
    left_out = {w.split(" ")[0] for w in row["warnings"] if "left out of dicom_json" in w}
    for tag in [e.tag for e in original]:
        if f"({tag.group:04X},{tag.element:04X})" in left_out:
            del original[tag]
    assert parsed == original, path
    pixel = next((e for e in ds if e.tag in PIXEL_DATA_TAGS), None)
    assert row["pixel_data_length"] == (len(pixel.value) if pixel is not None else None)
    assert all(e.tag not in PIXEL_DATA_TAGS for e in parsed)


REAL_WORLD = real_world_files()


def test_real_world_corpus_is_there():
    assert len(REAL_WORLD) > 100


@pytest.mark.parametrize("path", REAL_WORLD, ids=lambda p: Path(p).name)
def test_real_world_row_matches_pydicom(path):
    ds = _readable(path)
    if ds is None:
        pytest.skip("pydicom cannot read it either (a negative case)")
    _check_row(path, ds)


def test_synthetic_rows_match_pydicom(tmp_path):
    for path in small_archive(tmp_path / "a", studies=2, series=2, instances=2):
        _check_row(path, dcmread(path))


def test_json_column_is_dicom_json_queryable_by_duckdb(tmp_path):
    import duckdb

    (path,) = small_archive(tmp_path / "a", studies=1, series=1, instances=1)
    row = instance_row(dcmread(path, defer_size=1024))
    assert [b["path"] for b in row["bulk_data"]] == ["7FE00010"]
    assert "7FE00010" not in json.loads(row["dicom_json"])
    con = duckdb.connect()
    got = con.execute("SELECT j->'00100010'->'Value'->0->>'Alphabetic' FROM (SELECT ?::JSON AS j)", [row["dicom_json"]]).fetchone()[0]
    assert got == str(dcmread(path).PatientName)


def _with_raw(src, dst, elements: dict) -> Path:
    """A copy with element values written as raw bytes (pydicom would refuse the values)."""
    from pydicom.dataelem import RawDataElement

    ds = dcmread(src)
    for tag, (vr, value) in elements.items():
        ds._dict[pydicom.tag.Tag(tag)] = RawDataElement(pydicom.tag.Tag(tag), vr, len(value), value, 0, False, True)
    ds.save_as(dst)
    return dst


def test_damaged_values_become_null_with_a_warning_naming_no_value(tmp_path):
    (src,) = small_archive(tmp_path / "a", studies=1, series=1, instances=1)
    bad = _with_raw(src, tmp_path / "bad.dcm", {0x00200011: ("IS", b"1e400 "), 0x00080020: ("DA", b"20249999"), 0x00100030: ("DA", b"1997.04.24")})
    row = instance_row(dcmread(bad, defer_size=1024))
    assert row["series_number"] is None and row["study_date"] is None
    assert row["patient_birth_date"] == date(1997, 4, 24)  # old ACR-NEMA style is parsed
    assert any(w.startswith("SeriesNumber (0020,0011)") for w in row["warnings"])
    assert any(w.startswith("StudyDate (0008,0020)") for w in row["warnings"])
    assert not any("1e400" in w or "2024-99-99" in w for w in row["warnings"])


def test_a_damaged_element_is_left_out_of_json_not_the_row(tmp_path):
    (src,) = small_archive(tmp_path / "a", studies=1, series=1, instances=1)
    ds = dcmread(src)
    out = _with_raw(src, tmp_path / "damaged.dcm", {0x00280101: ("US", b"\x01\x00\x00")})  # 3 bytes for US
    row = instance_row(dcmread(out, defer_size=1024))
    assert row["bits_stored"] is None
    assert row["sop_instance_uid"] == ds.SOPInstanceUID
    assert any(w.startswith("BitsStored") for w in row["warnings"])


def test_empty_values_are_null_without_warnings(tmp_path):
    (src,) = small_archive(tmp_path / "a", studies=1, series=1, instances=1)
    empty = _with_raw(src, tmp_path / "empty.dcm", {0x00200013: ("IS", b""), 0x00080021: ("DA", b""), 0x00180050: ("DS", b"")})
    row = instance_row(dcmread(empty, defer_size=1024))
    assert (row["instance_number"], row["series_date"], row["slice_thickness"]) == (None, None, None)
    assert row["warnings"] == []
