"""Crosswalk and standardize actions read keys from raw (just parsed) elements directly;
the result must equal what pydicom's decoding gives, for any character set and VR."""
from io import BytesIO

import pytest
from pydicom import Dataset, dcmread
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

from axiom_dagster.ingest.arrival import ArrivalMeta
from axiom_dagster.rules import compile_rules


def parsed(**attrs) -> Dataset:
    ds = Dataset()
    for k, v in attrs.items():
        setattr(ds, k, v)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    buf = BytesIO()
    ds.save_as(buf, enforce_file_format=False, implicit_vr=False, little_endian=True)
    return dcmread(BytesIO(buf.getvalue()), force=True)  # elements stay raw until read


def engine(tmp_path, csv_text: str, match: dict, set_: dict, ci=False):
    (tmp_path / "cw.csv").write_text(csv_text, encoding="utf-8")
    return compile_rules({
        "crosswalks": {"cw": {"path": "cw.csv", "case_insensitive": ci}},
        "default_destinations": ["*"],
        "rulesets": [{"name": "r", "rules": [{"name": "x", "actions": [
            {"action": "crosswalk", "crosswalk": "cw", "match": match, "set": set_, "on_miss": "keep"}]}]}],
    }, None, tmp_path)


@pytest.mark.parametrize("charset", ["ISO_IR 100", "ISO_IR 192"])
def test_non_ascii_keys_under_each_character_set(tmp_path, charset):
    eng = engine(tmp_path, "name,code\nMüller^Jürgen,M1\n", {"name": "PatientName"}, {"PatientID": "code"})
    ds = parsed(SpecificCharacterSet=charset, PatientName="Müller^Jürgen", PatientID="old")
    out = eng.morph(ds, ArrivalMeta(source="t"), ["a"])
    assert out.copies[0].dataset.PatientID == "M1" and out.lookup_misses == []


def test_numeric_multivalued_and_case_insensitive_keys(tmp_path):
    eng = engine(tmp_path, "thick,series,desc\n1.50,3,thin\n", {"thick": "SliceThickness", "series": "SeriesNumber"},
                 {"SeriesDescription": "desc"})
    out = eng.morph(parsed(SliceThickness="1.50", SeriesNumber="3", SeriesDescription="x"), ArrivalMeta(source="t"), ["a"])
    assert out.copies[0].dataset.SeriesDescription == "thin"

    eng = engine(tmp_path, "types,label\nORIGINAL\\PRIMARY\\AXIAL,axial\n", {"types": "ImageType"}, {"ProtocolName": "label"}, ci=True)
    out = eng.morph(parsed(ImageType=["original", "PRIMARY", "Axial"]), ArrivalMeta(source="t"), ["a"])
    assert out.copies[0].dataset.ProtocolName == "axial"


def test_value_already_equal_is_no_change(tmp_path):
    eng = engine(tmp_path, "pid,rid\nP1,P1\n", {"pid": "PatientID"}, {"PatientID": "rid"})
    ds = parsed(PatientID="P1")
    out = eng.morph(ds, ArrivalMeta(source="t"), ["a"])
    assert out.copies[0].changed is False and out.copies[0].dataset is ds
