"""An identifying value in every non-sequence attribute of PS3.15 2026d Table E.1-1, with nested
sequences (one stored as UN), private blocks and an unknown attribute, in five encodings:
nothing identifying survives the Basic Profile (searched in the output bytes), and each
option keeps exactly what it says."""
from __future__ import annotations

import warnings
from io import BytesIO

import pytest
from pydicom import config, dcmread
from pydicom.filewriter import dcmwrite
from pydicom.valuerep import validate_value

from axiom_dagster.deid import DeidOptions, DeidProfile, UIDMapper, shift_dates

from .phi import RT_PLAN_SEQ, TS, UNKNOWN_PUBLIC, dataset_bytes, encode, findable, phi_dataset, table_vr

KEY = b"deid-test-key-0123456789abcdef"
ENCODINGS = list(TS)
_PHI = phi_dataset()


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():  # pydicom warns about the tags its dictionary lacks
        warnings.simplefilter("ignore")
        yield


def deidentify(encoding: str, **options):
    """(profile, output Part 10 bytes, output read back, the output's data set bytes)."""
    p = DeidProfile("t", DeidOptions(**options), UIDMapper(KEY))
    ds = dcmread(BytesIO(encode(_PHI[0], encoding)))
    p.apply(ds)
    out = BytesIO()
    ds.save_as(out, enforce_file_format=True)
    back = dcmread(BytesIO(out.getvalue()))
    for elem in back.iterall():  # every value decodes
        _ = elem.value
    return p, out.getvalue(), back, dataset_bytes(out.getvalue(), str(back.file_meta.TransferSyntaxUID))


def as_explicit_le(ds) -> bytes:
    ds.file_meta.TransferSyntaxUID = TS["explicit_le"]
    buf = BytesIO()
    dcmwrite(buf, ds, implicit_vr=False, little_endian=True, enforce_file_format=True)
    return buf.getvalue()


def survivors(originals, raw: bytes, back, allowed=frozenset()) -> list:
    """Original values found in the output: bytes in either encoding, numbers by value."""
    le = as_explicit_le(back)
    found = [(hex(tag), v) for tag, v in originals if (tag, str(v)) not in allowed
             for pat in findable(v) if pat in raw or pat in le]
    numbers = {(tag, v) for tag, v in originals if isinstance(v, (int, float)) and (tag, str(v)) not in allowed}
    found += [(hex(e.tag), e.value) for e in back.iterall() if isinstance(e.value, (int, float)) and (int(e.tag), e.value) in numbers]
    return found


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_basic_profile_leaves_no_identifying_value(encoding):
    _, _, back, raw = deidentify(encoding)
    assert survivors(_PHI[1], raw, back) == []
    assert back.PatientIdentityRemoved == "YES"


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_sequence_stored_as_un_is_opened_and_unknown_attributes_go(encoding):
    _, _, back, _ = deidentify(encoding)
    seq = back[RT_PLAN_SEQ]
    assert seq.VR == "SQ" and len(seq.value) == 1  # parsed by the dictionary, kept, cleaned inside
    item = seq.value[0]
    assert str(item.PatientName).startswith("ANON-")
    assert item.ReferencedSOPInstanceUID == UIDMapper(KEY).remap(_PHI[0][RT_PLAN_SEQ].value[0].ReferencedSOPInstanceUID)
    assert "InstitutionName" not in item and "StudyDate" in item and not item.StudyDate
    level2 = item.ReferencedSeriesSequence[0]
    assert level2.ReferencedSeriesSequence[0].ReferencedSOPInstanceUID.startswith("2.25.")
    tags = {int(e.tag) for e in back.iterall()}
    assert UNKNOWN_PUBLIC not in tags  # a public attribute no dictionary knows
    assert not any((t >> 16) & 1 for t in tags)  # every private block


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_dummy_values_are_valid_for_their_vr(encoding):
    p, _, back, _ = deidentify(encoding)
    checked = 0
    for tag, original in _PHI[1]:
        if p.code_for(tag) != "D" or tag not in back:
            continue
        elem = back[tag]
        if elem.VR in ("SQ", "UN"):
            continue
        assert elem.value not in (None, "", b"") and str(elem.value) != str(original), hex(tag)
        validate_value(elem.VR, elem.value, config.RAISE)
        checked += 1
    assert checked > 40


OPTIONS = ["retain_safe_private", "retain_uids", "retain_device_identity", "retain_institution_identity",
           "retain_patient_characteristics", "retain_long_full_dates", "retain_long_modified_dates",
           "clean_descriptors", "clean_structured_content", "clean_graphics"]


@pytest.mark.parametrize("encoding", ["explicit_le", "all_un"])
@pytest.mark.parametrize("option", OPTIONS)
def test_each_option_keeps_exactly_what_it_says(option, encoding):
    p, _, back, raw = deidentify(encoding, **{option: True})
    ds = _PHI[0]
    offset = p.uids.day_offset(str(ds.PatientID), p.date_shift_max_days)
    kept_vrs = ("TM", "LO", "SH", "ST", "LT", "UT", "UC", "CS", "AE", "AS", "PN")
    # Values the option may keep, at any depth: K, and Clean of times (whole-day shifts keep
    # the time of day) and of text that names no identifier of the patient (these name none).
    # Shifted dates are checked by value (here and in the date-shift test), not in the bytes:
    # one date shifted can equal another's original.
    allowed = {(tag, str(v)) for tag, v in _PHI[1]
               if p.code_for(tag) == "K" or (p.code_for(tag) == "C" and table_vr(tag) in kept_vrs + ("DA", "DT"))}
    for tag, original in _PHI[1]:
        if tag not in ds or ds[tag].value != original:
            continue  # nested values: checked by the byte search below
        code = p.code_for(tag)
        vr = ds[tag].VR
        if code == "K" or (code == "C" and vr in kept_vrs):
            assert tag in back and str(back[tag].value) == str(original), (hex(tag), code)
        elif code == "C" and vr in ("DA", "DT"):
            assert back[tag].value == shift_dates(original, vr, offset) != original, hex(tag)
        elif code == "C":
            assert tag not in back, f"{hex(tag)}: binary values cannot be cleaned, so are removed"
    assert survivors(_PHI[1], raw, back, frozenset(allowed)) == []
    private = {int(t) for t in back.keys() if t.group & 1}
    if option == "retain_safe_private":
        block = back.private_block(0x0019, "SIEMENS MR HEADER")
        assert private == {0x00190010, int(block.get_tag(0x0C))} and back[block.get_tag(0x0C)].value == 1000
    else:
        assert private == set()


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_date_shift_moves_every_date_at_every_depth(encoding):
    p, _, back, _ = deidentify(encoding, retain_long_modified_dates=True)
    offset = p.uids.day_offset(str(_PHI[0].PatientID), p.date_shift_max_days)
    before = {}
    for elem in _PHI[0].iterall():
        if elem.VR in ("DA", "DT") and elem.value:
            before.setdefault(int(elem.tag), set()).add(elem.value)
    seen = 0
    for elem in back.iterall():
        if elem.VR in ("DA", "DT") and elem.value and int(elem.tag) in before:
            assert elem.value not in before[int(elem.tag)], hex(elem.tag)
            assert any(shift_dates(v, elem.VR, offset) == elem.value for v in before[int(elem.tag)]), hex(elem.tag)
            seen += 1
    assert seen > 100
    assert back.LongitudinalTemporalInformationModified == "MODIFIED"


@pytest.mark.parametrize("encoding", ["explicit_le", "explicit_be"])
def test_large_sequence_stored_as_un_is_opened(encoding):
    """pydicom leaves UN values of 64 KiB and more as bytes, and reads big endian ones as big
    endian; PS3.5 6.2.2 says they hold Implicit VR Little Endian items: they are parsed so."""
    from pydicom import Dataset, Sequence

    from .phi import nested_item

    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.PatientID = "PID-LARGE"
    ds.add_new(RT_PLAN_SEQ, "SQ", Sequence([nested_item(20000 + 20 * i, 1) for i in range(400)]))
    names = [str(item.PatientName).encode() for item in ds[RT_PLAN_SEQ].value]
    data = encode(ds, encoding)
    assert len(data) > 0x10000
    p = DeidProfile("t", DeidOptions(), UIDMapper(KEY))
    back = dcmread(BytesIO(data))
    p.apply(back)
    out = BytesIO()
    back.save_as(out, enforce_file_format=True)
    again = dcmread(BytesIO(out.getvalue()))
    assert again[RT_PLAN_SEQ].VR == "SQ" and len(again[RT_PLAN_SEQ].value) == 400
    assert not any(name in out.getvalue() for name in names)
