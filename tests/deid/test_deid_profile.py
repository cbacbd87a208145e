"""PS3.15 de-identification: a dataset with every Table E.1-1 attribute, options, UID
consistency across a multi-series study, private attributes, charsets, DCMTK read-back."""
from __future__ import annotations

import shutil
import subprocess
from copy import deepcopy
from io import BytesIO

import pytest
from pydicom import Dataset, Sequence, dcmread
from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.dataset import FileMetaDataset
from pydicom.filewriter import dcmwrite
from pydicom.uid import ExplicitVRLittleEndian

from axiom_dagster.deid import TABLE, TABLE_EDITION, DeidOptions, DeidProfile, UIDMapper
from axiom_dagster.deid.uidmap import MissingSecretError, secret_from_env
from axiom_dagster.dicom.uids import is_valid_uid

KEY = b"deid-test-key-0123456789abcdef"
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"


def sample_value(vr: str, n: int):
    vr = vr.split(" or ")[0]
    return {
        "AE": "AE1", "AS": "042Y", "AT": 0x00100010, "CS": "VALUE", "DA": "20240315", "DS": "1.5",
        "DT": "20240315101010", "FL": 1.5, "FD": 2.5, "IS": "7", "LO": f"Long value {n}",
        "LT": f"Long text {n}", "PN": f"Doe^John{n}", "SH": f"SHORT{n}", "SL": -3, "SS": -2, "ST": f"text {n}",
        "SV": 5, "TM": "101010", "UC": f"uc {n}", "UI": f"1.2.826.0.1.3680043.10.999.{n}", "UL": 9, "US": 4,
        "UR": "http://example.org/x", "UT": f"ut {n}", "UV": 6,
    }.get(vr, b"\x01\x02")


def table_dataset() -> tuple[Dataset, dict[int, object]]:
    """Every Table E.1-1 attribute that may appear in a data set, with a value of its VR."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    originals: dict[int, object] = {}
    for n, tag in enumerate(sorted(TABLE)):
        group = tag >> 16
        if group in (0x0000, 0x0002, 0x0004) or group >= 0xFFFA:
            continue  # command, file meta, directory and digital signature/padding elements
        try:
            vr = dictionary_VR(tag).split(" or ")[0]
        except KeyError:
            continue  # newer than the installed dictionary: see test_phi_encodings.py
        if vr == "SQ":
            item = Dataset()
            item.CodeValue = "C1"
            item.CodingSchemeDesignator = "DCM"
            item.CodeMeaning = "meaning"
            item.ReferencedSOPInstanceUID = f"1.2.826.0.1.3680043.10.998.{n}"
            ds.add_new(tag, vr, Sequence([item]))
        else:
            ds.add_new(tag, vr, sample_value(vr, n))
        originals[tag] = ds[tag].value
    ds.SOPClassUID = CT_IMAGE_STORAGE
    ds.Modality = "CT"
    ds.Manufacturer = "ACME"
    originals[0x00080016] = ds.SOPClassUID
    return ds, originals


def profile(**options) -> DeidProfile:
    return DeidProfile("t", DeidOptions(**options), UIDMapper(KEY))


def check_profile_semantics(p: DeidProfile, ds: Dataset, originals: dict[int, object]) -> None:
    from copy import deepcopy

    out = deepcopy(ds)
    p.apply(out)
    for tag, before in originals.items():
        code = p.code_for(tag) or "K"
        name = keyword_for_tag(tag) or hex(tag)
        if code == "X":
            assert tag not in out, f"{name} should be removed"
            continue
        if code == "C" and dictionary_VR(tag).startswith(("OB", "OW", "UN")):
            assert tag not in out, f"{name}: binary values cannot be cleaned, so are removed"
            continue
        assert tag in out, f"{name} ({code}) should be present"
        after = out[tag].value
        vr = out[tag].VR
        if code == "K":
            if vr == "SQ":
                assert len(after) == len(before)
            else:
                assert after == before, f"{name} kept must be unchanged"
        elif code == "Z":
            if tag in (0x00100010, 0x00100020):
                assert str(after).startswith("ANON-") and after != before
            else:
                assert after in (None, "", b"") or (vr == "SQ" and len(after) == 0), f"{name} must be empty"
        elif code == "D":
            assert after not in (None, "", b"") and after != before, f"{name} needs a dummy"
        elif code == "U":
            assert after != before and is_valid_uid(str(after)), f"{name} must be a new UID"
        elif code == "U*":
            assert out[tag][0].ReferencedSOPInstanceUID != before[0].ReferencedSOPInstanceUID
        elif code == "C":
            if vr in ("DA", "DT"):
                if p.options.retain_long_modified_dates:
                    assert after != before and len(str(after)) == len(str(before))
                else:
                    assert not after
        else:
            pytest.fail(f"unexpected code {code} for {name}")
    # Nothing of the table's removed/replaced values survives anywhere in the output text.
    assert out.PatientIdentityRemoved == "YES"
    assert "Doe^John" not in str(out.PatientName)


def test_table_is_the_standard_one():
    assert TABLE_EDITION == "DICOM PS3.15 2026d Table E.1-1"
    assert len(TABLE) == 653  # and three repeating-group rows
    assert TABLE[0x00100010].basic == "Z"  # Patient's Name
    assert TABLE[0x00080018].basic == "U" and TABLE[0x00080018].options == {"retain_uids": "K"}
    assert TABLE[0x00080080].basic == "X/Z/D"  # Institution Name
    assert TABLE[0x00081140].basic == "X/Z/U*"  # Referenced Image Sequence


def test_every_table_attribute_basic_profile():
    ds, originals = table_dataset()
    check_profile_semantics(profile(), ds, originals)


@pytest.mark.parametrize("dates", ["retain_long_full_dates", "retain_long_modified_dates"])
def test_every_table_attribute_all_options(dates):
    ds, originals = table_dataset()
    options = dict(retain_safe_private=True, retain_uids=True, retain_device_identity=True,
                   retain_institution_identity=True, retain_patient_characteristics=True,
                   clean_descriptors=True, clean_structured_content=True, clean_graphics=True)
    options[dates] = True
    p = profile(**options)
    check_profile_semantics(p, ds, originals)
    assert p.code_for(0x00080018) == "K"  # Retain UIDs
    assert p.code_for(0x00181000) == "K"  # Device Serial Number
    assert p.code_for(0x00080080) == "K"  # Institution Name
    assert p.code_for(0x00101010) == "K"  # Patient's Age
    assert p.code_for(0x00080020) == ("K" if dates == "retain_long_full_dates" else "C")
    assert p.code_for(0x00081120) == "K"  # Referenced Patient Sequence: Retain UIDs K in 2026d


def test_method_codes_and_longitudinal_flag():
    ds, _ = table_dataset()
    p = profile(retain_long_modified_dates=True, retain_device_identity=True, clean_descriptors=True)
    p.apply(ds)
    codes = [(i.CodeValue, i.CodingSchemeDesignator) for i in ds.DeidentificationMethodCodeSequence]
    assert codes == [("113100", "DCM"), ("113109", "DCM"), ("113107", "DCM"), ("113105", "DCM")]
    assert ds.LongitudinalTemporalInformationModified == "MODIFIED"
    assert all(len(v) <= 64 for v in ds.DeidentificationMethod)


def make_instance(study, series, sop, patient="PID-1", name="Doe^Jane", refs=()):
    ds = Dataset()
    ds.SOPClassUID = CT_IMAGE_STORAGE
    ds.SOPInstanceUID = sop
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = series
    ds.FrameOfReferenceUID = study + ".9"
    ds.PatientID = patient
    ds.PatientName = name
    ds.StudyDate = "20240315"
    ds.Modality = "CT"
    if refs:
        def ref(uid):
            it = Dataset()
            it.ReferencedSOPClassUID = CT_IMAGE_STORAGE
            it.ReferencedSOPInstanceUID = uid
            return it

        ds.SourceImageSequence = Sequence([ref(r) for r in refs])
        ds.ReferencedImageSequence = Sequence([ref(refs[-1])])
        rs = Dataset()
        rs.SeriesInstanceUID = series.rsplit(".", 1)[0] + ".1"
        rs.ReferencedInstanceSequence = Sequence([ref(refs[0])])
        ds.ReferencedSeriesSequence = Sequence([rs])
    return ds


def test_uids_consistent_across_multi_series_study_and_runs():
    study = "1.2.826.0.1.3680043.10.1"
    s1, s2 = study + ".1", study + ".2"
    instances = [
        make_instance(study, s1, s1 + ".1"),
        make_instance(study, s1, s1 + ".2"),
        make_instance(study, s2, s2 + ".1", refs=[s1 + ".1", s1 + ".2"]),
        make_instance(study, s2, s2 + ".2", refs=[s1 + ".2"]),
    ]
    run1, run2 = profile(), profile()  # two independent runs, same key
    out = []
    for i, ds in enumerate(instances):
        d = deepcopy(ds)
        (run1 if i % 2 else run2).apply(d)
        out.append(d)
    assert len({d.StudyInstanceUID for d in out}) == 1 and out[0].StudyInstanceUID != study
    assert out[0].SeriesInstanceUID == out[1].SeriesInstanceUID != out[2].SeriesInstanceUID
    assert len({d.SOPInstanceUID for d in out}) == 4
    assert out[0].FrameOfReferenceUID == out[3].FrameOfReferenceUID
    assert [i.ReferencedSOPInstanceUID for i in out[2].SourceImageSequence] == [out[0].SOPInstanceUID, out[1].SOPInstanceUID]
    assert out[3].ReferencedImageSequence[0].ReferencedSOPInstanceUID == out[1].SOPInstanceUID
    nested = out[2].ReferencedSeriesSequence[0]
    assert nested.SeriesInstanceUID == out[0].SeriesInstanceUID
    assert nested.ReferencedInstanceSequence[0].ReferencedSOPInstanceUID == out[0].SOPInstanceUID
    assert out[2].SourceImageSequence[0].ReferencedSOPClassUID == CT_IMAGE_STORAGE  # class UIDs kept
    assert len({d.PatientID for d in out}) == 1 and out[0].PatientID != "PID-1"
    # Another key: other UIDs (the mapping is keyed, not a plain hash).
    other = DeidProfile("o", DeidOptions(), UIDMapper(b"another-key-0123456789"))
    d = deepcopy(instances[0])
    other.apply(d)
    assert d.SOPInstanceUID != out[0].SOPInstanceUID


def test_modified_dates_shift_consistently_per_patient():
    from copy import deepcopy

    p = profile(retain_long_modified_dates=True)
    a, b = make_instance("1.2.3", "1.2.3.1", "1.2.3.1.1"), make_instance("1.2.4", "1.2.4.1", "1.2.4.1.1")
    c = make_instance("1.2.5", "1.2.5.1", "1.2.5.1.1", patient="PID-2")
    for d in (a, b, c):
        p.apply(d)
    assert a.StudyDate == b.StudyDate != "20240315"
    assert c.StudyDate != "20240315"  # the other patient has its own keyed offset
    keep = profile(retain_long_full_dates=True)
    d = deepcopy(make_instance("1.2.3", "1.2.3.1", "1.2.3.1.1"))
    keep.apply(d)
    assert d.StudyDate == "20240315"


def add_private(ds: Dataset) -> None:
    siemens = ds.private_block(0x0019, "SIEMENS MR HEADER", create=True)
    siemens.add_new(0x0C, "IS", "1000")  # B_value: safe
    siemens.add_new(0x08, "CS", "IMAGE NUM 4")  # not in the safe list
    other = ds.private_block(0x0029, "SIEMENS CSA HEADER", create=True)
    other.add_new(0x10, "OB", b"PATIENT Doe^John")


def test_private_attributes_removed_unless_safe():
    ds = make_instance("1.2.3", "1.2.3.1", "1.2.3.1.1")
    add_private(ds)
    from copy import deepcopy

    basic = deepcopy(ds)
    profile().apply(basic)
    assert not any(t.group & 1 for t in basic.keys())

    safe = deepcopy(ds)
    profile(retain_safe_private=True).apply(safe)
    kept = {int(t) for t in safe.keys() if t.group & 1}
    block = safe.private_block(0x0019, "SIEMENS MR HEADER")
    assert kept == {0x00190010, int(block.get_tag(0x0C))}
    assert safe[block.get_tag(0x0C)].value == 1000


def test_sequences_are_recursed():
    ds = make_instance("1.2.3", "1.2.3.1", "1.2.3.1.1")
    item = Dataset()
    item.PatientName = "Doe^Nested"
    item.ReferencedSOPInstanceUID = "1.2.3.1.7"
    item.InstitutionName = "Secret Hospital"
    ds.add_new(0x00400260, "SQ", Sequence([item]))  # Performed Protocol Code Sequence: not in the table
    profile().apply(ds)
    nested = ds[0x00400260][0]
    assert str(nested.PatientName) != "Doe^Nested"
    assert nested.ReferencedSOPInstanceUID == UIDMapper(KEY).remap("1.2.3.1.7")
    assert "InstitutionName" not in nested


@pytest.mark.parametrize("charset, name, desc", [
    ("ISO_IR 100", "Müller^Jürgen", "Befund Müller Kopf"),
    ("ISO_IR 192", "Łukasz^Żółć", "Łukasz 頭部 CT"),
])
def test_non_ascii_clean_descriptors_roundtrip(charset, name, desc):
    ds = make_instance("1.2.3", "1.2.3.1", "1.2.3.1.1", name=name)
    ds.SpecificCharacterSet = charset
    ds.StudyDescription = desc
    buf = BytesIO()
    dcmwrite(buf, ds, implicit_vr=False, little_endian=True)
    ds = dcmread(BytesIO(buf.getvalue()), force=True)
    profile(clean_descriptors=True).apply(ds)
    assert name.split("^")[0] not in ds.StudyDescription
    expected = desc.replace(name.split("^")[0], "")
    buf = BytesIO()
    dcmwrite(buf, ds, implicit_vr=False, little_endian=True)
    back = dcmread(BytesIO(buf.getvalue()), force=True)
    assert back.StudyDescription == expected


def test_secret_from_env(monkeypatch):
    monkeypatch.delenv("AXIOM_DEID_SECRET", raising=False)
    with pytest.raises(MissingSecretError, match="AXIOM_DEID_SECRET is not set"):
        secret_from_env("AXIOM_DEID_SECRET")
    monkeypatch.setenv("AXIOM_DEID_SECRET", "short")
    with pytest.raises(MissingSecretError, match="shorter"):
        secret_from_env("AXIOM_DEID_SECRET")


def test_uid_format():
    m = UIDMapper(KEY)
    uid = m.remap("1.2.3")
    assert uid.startswith("2.25.") and is_valid_uid(uid) and len(uid) <= 64
    assert m.remap("1.2.3") == uid == UIDMapper(KEY).remap("1.2.3\x00")


def write_file(ds: Dataset, path) -> None:
    meta = FileMetaDataset()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta = meta
    ds.preamble = b"\x00" * 128
    dcmwrite(path, ds, enforce_file_format=True)


def test_output_reads_back_with_pydicom(tmp_path):
    ds, _ = table_dataset()
    ds.SOPInstanceUID = "1.2.826.0.1.3680043.10.5"
    profile(retain_long_modified_dates=True, clean_descriptors=True).apply(ds)
    write_file(ds, tmp_path / "out.dcm")
    back = dcmread(tmp_path / "out.dcm")
    assert back.PatientIdentityRemoved == "YES"
    assert back.SOPInstanceUID == ds.SOPInstanceUID
    for elem in back.iterall():  # decodes every value
        _ = elem.value


@pytest.mark.skipif(shutil.which("/usr/bin/dcmdump") is None, reason="DCMTK dcmdump not installed (apt-get install dcmtk)")
def test_output_reads_back_with_dcmtk(tmp_path):
    ds, _ = table_dataset()
    ds.SOPInstanceUID = "1.2.826.0.1.3680043.10.5"
    profile().apply(ds)
    write_file(ds, tmp_path / "out.dcm")
    proc = subprocess.run(["/usr/bin/dcmdump", "-M", "+E", str(tmp_path / "out.dcm")], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "E:" not in proc.stderr, proc.stderr
    assert "(0012,0062) CS [YES]" in proc.stdout
    assert "(0010,0010) PN [ANON-" in proc.stdout
