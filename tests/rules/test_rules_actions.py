"""Actions on destination copies: edge cases, templates, crosswalks, charsets."""
from __future__ import annotations

from io import BytesIO

import pytest
from pydicom import Dataset, Sequence, dcmread
from pydicom.filewriter import dcmwrite

from axiom_dagster.ingest.arrival import ArrivalMeta
from axiom_dagster.rules import ConfigError, compile_rules

KEY = b"test-secret-key-0123456789"


def make_ds() -> Dataset:
    ds = Dataset()
    ds.PatientName = "Doe^John"
    ds.PatientID = "PID-001"
    ds.Modality = "CT"
    ds.StudyDate = "20240315"
    ds.SeriesDate = "20240316"
    ds.AcquisitionDateTime = "20240315143000"
    ds.StudyDescription = "CT HEAD W/O"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.InstitutionName = ""
    item = Dataset()
    item.SeriesInstanceUID = "1.2.3.1"
    item.SeriesDescription = "old"
    ds.ReferencedSeriesSequence = Sequence([item])
    return ds


def run(actions, ds=None, crosswalks=None, base_dir=None, **rule):
    config = {
        "rulesets": [{"name": "rs", "rules": [{"name": "r", "actions": actions, "destinations": ["d"], **rule}]}],
        "crosswalks": crosswalks or {},
        "deid_profiles": {"basic": {}},
    }
    engine = compile_rules(config, secret_key=KEY, base_dir=base_dir)
    original = make_ds() if ds is None else ds
    out = engine.morph(original, ArrivalMeta(), ["d"])
    return original, out


def result(actions, **kw):
    original, out = run(actions, **kw)
    assert out.quarantine_reason is None
    return original, out.copies[0]


def test_set_existing_and_create_missing_with_vr():
    original, copy = result([
        {"action": "set", "attribute": "StudyDescription", "value": "NEW"},
        {"action": "set", "attribute": "PatientAge", "value": "042Y"},
        {"action": "set", "attribute": "(0011,1001)", "vr": "LO", "value": "x"},
    ])
    ds = copy.dataset
    assert copy.changed and ds is not original
    assert ds.StudyDescription == "NEW" and ds.PatientAge == "042Y"
    assert ds[0x00111001].VR == "LO"
    assert original.StudyDescription == "CT HEAD W/O" and "PatientAge" not in original


def test_set_same_value_keeps_input_object():
    original, copy = result([{"action": "set", "attribute": "Modality", "value": "CT"}])
    assert copy.changed is False and copy.dataset is original


def test_set_private_by_creator_creates_block():
    original, copy = result([{"action": "set", "attribute": '(0009,"AXIOM",01)', "vr": "LO", "value": "tag"}])
    ds = copy.dataset
    block = ds.private_block(0x0009, "AXIOM")
    assert ds[block.get_tag(0x01)].value == "tag"


def test_set_needs_vr_for_private():
    with pytest.raises(ConfigError, match=r"actions\[0\]\.vr"):
        run([{"action": "set", "attribute": '(0009,"AXIOM",01)', "value": "x"}])


def test_set_multi_valued_and_numeric_vr():
    _, copy = result([
        {"action": "set", "attribute": "ImageType", "value": ["DERIVED", "SECONDARY"]},
        {"action": "set", "attribute": "Rows", "value": "256"},
    ])
    assert list(copy.dataset.ImageType) == ["DERIVED", "SECONDARY"]
    assert copy.dataset.Rows == 256


def test_set_in_sequence_items():
    original, copy = result([
        {"action": "set", "attribute": "ReferencedSeriesSequence[*].SeriesDescription", "value": "new"}
    ])
    assert copy.dataset.ReferencedSeriesSequence[0].SeriesDescription == "new"
    assert original.ReferencedSeriesSequence[0].SeriesDescription == "old"  # copy is deep enough


def test_template_values():
    _, copy = result([
        {"action": "set", "attribute": "SeriesDescription", "value": "{Modality}_{StudyDate}_{{x}}"},
        {"action": "set", "attribute": "StudyID", "value": "{ReferencedSeriesSequence[0].SeriesInstanceUID}"},
        {"action": "set", "attribute": "AccessionNumber", "value": "{PatientAge}-none"},
    ])
    assert copy.dataset.SeriesDescription == "CT_20240315_{x}"
    assert copy.dataset.StudyID == "1.2.3.1"
    assert copy.dataset.AccessionNumber == "-none"  # missing attribute renders empty


def test_delete_missing_is_no_change():
    original, copy = result([{"action": "delete", "attribute": "PatientAge"}])
    assert copy.changed is False
    _, copy = result([{"action": "delete", "attribute": "ReferencedSeriesSequence[*].SeriesDescription"}])
    assert "SeriesDescription" not in copy.dataset.ReferencedSeriesSequence[0]


def test_prepend_suffix_multivalue_empty_missing():
    _, copy = result([
        {"action": "prepend", "attribute": "StudyDescription", "value": "[{Modality}] "},
        {"action": "suffix", "attribute": "ImageType", "value": "_X"},
        {"action": "suffix", "attribute": "InstitutionName", "value": "HOSP"},
        {"action": "prepend", "attribute": "PatientAge", "value": "0"},
    ])
    ds = copy.dataset
    assert ds.StudyDescription == "[CT] CT HEAD W/O"
    assert list(ds.ImageType) == ["ORIGINAL_X", "PRIMARY_X", "AXIAL_X"]
    assert ds.InstitutionName == "HOSP"
    assert "PatientAge" not in ds


def test_regex_replace_groups():
    _, copy = result([
        {"action": "regex_replace", "attribute": "PatientName", "pattern": r"^(\w+)\^(\w+)$", "replacement": r"\2^\1"},
        {"action": "regex_replace", "attribute": "StudyDescription", "pattern": r"(?P<m>CT) (?P<r>HEAD)",
         "replacement": r"\g<r> \g<m>"},
    ])
    assert str(copy.dataset.PatientName) == "John^Doe"
    assert copy.dataset.StudyDescription == "HEAD CT W/O"
    with pytest.raises(ConfigError, match="replacement"):
        run([{"action": "regex_replace", "attribute": "PatientName", "pattern": "(a)", "replacement": r"\2"}])


def test_copy_and_move():
    original, copy = result([
        {"action": "copy", "source": "PatientID", "attribute": "OtherPatientIDs"},
        {"action": "move", "source": "StudyDescription", "attribute": "SeriesDescription"},
    ])
    ds = copy.dataset
    assert ds.OtherPatientIDs == "PID-001" and ds.PatientID == "PID-001"
    assert ds.SeriesDescription == "CT HEAD W/O" and "StudyDescription" not in ds
    assert "StudyDescription" in original
    _, copy = result([{"action": "copy", "source": "PatientAge", "attribute": "StudyID"}])
    assert copy.changed is False


def test_date_shift_fixed_and_keyed():
    _, copy = result([{"action": "date_shift", "days": -10}])
    ds = copy.dataset
    assert ds.StudyDate == "20240305" and ds.SeriesDate == "20240306"
    assert ds.AcquisitionDateTime == "20240305143000"
    _, a = result([{"action": "date_shift", "keyed": True, "max_days": 30}])
    _, b = result([{"action": "date_shift", "keyed": True, "max_days": 30}])
    assert a.dataset.StudyDate == b.dataset.StudyDate != "20240315"  # deterministic per patient
    _, only = result([{"action": "date_shift", "days": 1, "attributes": ["StudyDate"]}])
    assert only.dataset.StudyDate == "20240316" and only.dataset.SeriesDate == "20240316"


def write_csv(tmp_path, text):
    p = tmp_path / "map.csv"
    p.write_text(text, encoding="utf-8")
    return p


def test_crosswalk_csv_hit_miss_policies(tmp_path):
    write_csv(tmp_path, "mrn,site,study_code\nPID-001,A,TRIAL-7\nPID-002,B,TRIAL-8\n")
    cw = {"ids": {"path": "map.csv"}}
    base = {"action": "crosswalk", "crosswalk": "ids", "match": {"mrn": "PatientID"},
            "set": {"PatientID": "study_code", "ClinicalTrialSiteID": "site"}}
    _, copy = result([base], crosswalks=cw, base_dir=tmp_path)
    assert copy.dataset.PatientID == "TRIAL-7" and copy.dataset.ClinicalTrialSiteID == "A"

    ds = make_ds()
    ds.PatientID = "UNKNOWN"
    _, out = run([base], ds=ds, crosswalks=cw, base_dir=tmp_path)
    assert out.copies == [] and "crosswalk 'ids'" in out.quarantine_reason
    assert "UNKNOWN" not in out.quarantine_reason  # no identifiers in the reason

    _, out = run([{**base, "on_miss": "keep"}], ds=ds, crosswalks=cw, base_dir=tmp_path)
    assert out.copies[0].changed is False

    _, out = run([{**base, "on_miss": "default", "default": {"PatientID": "UNMAPPED"}}], ds=ds,
                 crosswalks=cw, base_dir=tmp_path)
    assert out.copies[0].dataset.PatientID == "UNMAPPED"


def test_crosswalk_parquet_multi_column_key(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"mrn": ["PID-001"], "mod": ["CT"], "label": ["Ü-label"]}), tmp_path / "m.parquet")
    _, copy = result([{"action": "crosswalk", "crosswalk": "p", "match": {"mrn": "PatientID", "mod": "Modality"},
                       "set": {"StudyDescription": "label"}}],
                     crosswalks={"p": {"path": "m.parquet"}}, base_dir=tmp_path)
    assert copy.dataset.StudyDescription == "Ü-label"


def test_crosswalk_config_errors(tmp_path):
    write_csv(tmp_path, "mrn,code\nA,1\nA,2\n")
    with pytest.raises(ValueError, match="duplicate key"):
        run([{"action": "crosswalk", "crosswalk": "c", "match": {"mrn": "PatientID"}, "set": {"StudyID": "code"}}],
            crosswalks={"c": {"path": "map.csv"}}, base_dir=tmp_path)
    write_csv(tmp_path, "mrn,code\nA,1\nB,2\n")
    with pytest.raises(ValueError, match="no column"):
        run([{"action": "crosswalk", "crosswalk": "c", "match": {"mrn": "PatientID"}, "set": {"StudyID": "nope"}}],
            crosswalks={"c": {"path": "map.csv"}}, base_dir=tmp_path)
    with pytest.raises(ValueError, match="unknown crosswalk 'zz'"):
        run([{"action": "crosswalk", "crosswalk": "zz", "match": {"mrn": "PatientID"}, "set": {"StudyID": "c"}}])


def test_quarantine_action():
    _, out = run([{"action": "quarantine", "reason": "blocked modality"}])
    assert out.quarantine_reason == "blocked modality" and out.copies == []


@pytest.mark.parametrize("charset, value", [("ISO_IR 100", "Ärztin Müller"), ("ISO_IR 192", "Łódź 東京")])
def test_non_ascii_set_survives_write_and_read(charset, value):
    ds = make_ds()
    ds.SpecificCharacterSet = charset
    _, copy = result([
        {"action": "set", "attribute": "InstitutionName", "value": value},
        {"action": "suffix", "attribute": "StudyDescription", "value": " ß"},
    ], ds=ds)
    buf = BytesIO()
    dcmwrite(buf, copy.dataset, implicit_vr=False, little_endian=True)
    back = dcmread(BytesIO(buf.getvalue()), force=True)
    assert back.InstitutionName == value
    assert back.StudyDescription == "CT HEAD W/O ß"


def test_record_original_attributes():
    original, copy = result(
        [{"action": "set", "attribute": "StudyDescription", "value": "FIXED"},
         {"action": "set", "attribute": "PatientAge", "value": "042Y"}],
        record_original=True, modification_reason="CORRECT",
    )
    item = copy.dataset.OriginalAttributesSequence[0]
    assert item.ReasonForTheAttributeModification == "CORRECT"
    assert item.ModifyingSystem == "AXIOM"
    assert len(item.AttributeModificationDateTime) >= 14
    mod = item.ModifiedAttributesSequence[0]
    assert mod.StudyDescription == "CT HEAD W/O"
    assert "PatientAge" in mod and not mod.PatientAge
    assert "PatientName" not in mod
    assert "OriginalAttributesSequence" not in original


def test_record_original_skipped_when_deidentified():
    _, copy = result([{"action": "deidentify", "profile": "basic"}], record_original=True)
    assert "OriginalAttributesSequence" not in copy.dataset
    assert copy.dataset.PatientIdentityRemoved == "YES"
