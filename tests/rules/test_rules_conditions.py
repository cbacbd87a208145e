"""Operators, paths and combinators of compiled conditions."""
from __future__ import annotations

import pickle

import pytest
from pydicom import Dataset, Sequence

from axiom_dagster.ingest.arrival import ArrivalMeta
from axiom_dagster.rules.conditions import compile_condition
from axiom_dagster.rules.context import EvalContext
from axiom_dagster.rules.paths import ConfigError, TagPath
from axiom_dagster.config.rules import Condition


def make_ds() -> Dataset:
    ds = Dataset()
    ds.PatientName = "Doe^John"
    ds.PatientID = "PID-001"
    ds.Modality = "CT"
    ds.StudyDate = "20240315"
    ds.StudyTime = "1430"
    ds.AcquisitionDateTime = "20240315143000.000000+0100"
    ds.SliceThickness = "2.5"
    ds.SeriesNumber = "12"
    ds.Rows = 512
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.InstitutionName = ""
    ref1, ref2 = Dataset(), Dataset()
    ref1.SeriesInstanceUID = "1.2.3.1"
    ref2.SeriesInstanceUID = "1.2.3.2"
    ds.ReferencedSeriesSequence = Sequence([ref1, ref2])
    block = ds.private_block(0x0009, "GEMS_IDEN_01", create=True)
    block.add_new(0x04, "SH", "GE-SCANNER")
    return ds


META = ArrivalMeta(source="ct-scp", calling_ae="CT01", called_ae="AXIOM", source_ip="10.1.2.3")


def ev(cond: dict, ds: Dataset | None = None, meta: ArrivalMeta = META) -> bool:
    node = compile_condition(Condition.model_validate(cond), "conditions")
    ctx = EvalContext(make_ds() if ds is None else ds, meta)
    return node.eval(ctx)


def leaf(attribute, op, value=None, **kw):
    d = {"attribute": attribute, "op": op, **kw}
    if value is not None:
        d["value"] = value
    return d


@pytest.mark.parametrize(
    "cond, expected",
    [
        (leaf("Modality", "eq", "CT"), True),
        (leaf("Modality", "eq", "ct"), False),
        (leaf("Modality", "eq", "ct", case_insensitive=True), True),
        (leaf("Modality", "ne", "MR"), True),
        (leaf("Modality", "ne", "CT"), False),
        (leaf("(0008,0060)", "eq", "CT"), True),
        (leaf("00080060", "eq", "CT"), True),
        (leaf("PatientName", "contains", "John"), True),
        (leaf("PatientName", "contains", "john"), False),
        (leaf("PatientName", "contains", "john", case_insensitive=True), True),
        (leaf("PatientName", "startswith", "Doe^"), True),
        (leaf("PatientName", "endswith", "^John"), True),
        (leaf("PatientID", "regex", r"^PID-\d{3}$"), True),
        (leaf("PatientID", "regex", r"^pid", case_insensitive=True), True),
        (leaf("PatientID", "regex", r"^X"), False),
        (leaf("Modality", "in", ["MR", "CT"]), True),
        (leaf("Modality", "in", ["mr", "ct"]), False),
        (leaf("Modality", "in", ["mr", "ct"], case_insensitive=True), True),
        (leaf("Modality", "not_in", ["MR", "US"]), True),
        (leaf("Modality", "not_in", ["CT"]), False),
        (leaf("Modality", "exists"), True),
        (leaf("PatientAge", "exists"), False),
        (leaf("PatientAge", "not_exists"), True),
        # numeric comparisons on IS / DS / US
        (leaf("SeriesNumber", "gt", 9), True),  # "12" > 9 numerically, not as text
        (leaf("SeriesNumber", "lt", 100), True),
        (leaf("SliceThickness", "ge", 2.5), True),
        (leaf("SliceThickness", "le", "2.4"), False),
        (leaf("Rows", "eq", 512), True),
        (leaf("Rows", "gt", 1024), False),
        (leaf("SliceThickness", "eq", 2.5), True),
        # dates and times
        (leaf("StudyDate", "gt", "20240101"), True),
        (leaf("StudyDate", "lt", "2024-03-15"), False),
        (leaf("StudyDate", "le", "2024-03-15"), True),
        (leaf("StudyDate", "eq", "2024-03-15"), True),
        (leaf("StudyTime", "ge", "14:30"), True),  # "1430" is 14:30:00
        (leaf("StudyTime", "eq", "143000"), True),
        (leaf("StudyTime", "lt", "143000.5"), True),
        (leaf("AcquisitionDateTime", "eq", "20240315133000+0000"), True),  # compared in UTC
        (leaf("AcquisitionDateTime", "lt", "20240315140000"), True),
    ],
)
def test_operators(cond, expected):
    assert ev(cond) is expected


def test_yaml_date_objects_compare():
    import datetime

    assert ev(leaf("StudyDate", "ge", datetime.date(2024, 3, 15)))
    assert not ev(leaf("StudyDate", "gt", datetime.date(2024, 3, 15)))


def test_missing_and_empty_attribute_semantics():
    for op, value, expected in [
        ("eq", "X", False), ("ne", "X", True), ("contains", "X", False), ("gt", 1, False),
        ("in", ["X"], False), ("not_in", ["X"], True), ("regex", ".*", False),
    ]:
        assert ev(leaf("PatientAge", op, value)) is expected, op  # missing
        assert ev(leaf("InstitutionName", op, value)) is expected, op  # present, empty
    assert ev(leaf("InstitutionName", "exists"))  # present even though empty


def test_multi_valued_any_and_all():
    assert ev(leaf("ImageType", "eq", "AXIAL"))
    assert not ev(leaf("ImageType", "eq", "AXIAL", match="all"))
    assert ev(leaf("ImageType", "regex", "^[A-Z]+$", match="all"))
    assert ev(leaf("ImageType[1]", "eq", "PRIMARY"))
    assert not ev(leaf("ImageType[1]", "eq", "AXIAL"))


def test_sequence_paths():
    assert ev(leaf("ReferencedSeriesSequence[0].SeriesInstanceUID", "eq", "1.2.3.1"))
    assert not ev(leaf("ReferencedSeriesSequence[0].SeriesInstanceUID", "eq", "1.2.3.2"))
    assert ev(leaf("ReferencedSeriesSequence[*].SeriesInstanceUID", "eq", "1.2.3.2"))
    assert ev(leaf("ReferencedSeriesSequence.SeriesInstanceUID", "eq", "1.2.3.2"))
    assert not ev(leaf("ReferencedSeriesSequence[*].SeriesInstanceUID", "startswith", "1.2.3.1", match="all"))
    assert not ev(leaf("ReferencedSeriesSequence[5].SeriesInstanceUID", "exists"))
    assert ev(leaf("ReferencedSeriesSequence", "exists"))


def test_private_attribute_by_creator():
    assert ev(leaf('(0009,"GEMS_IDEN_01",04)', "eq", "GE-SCANNER"))
    # Same creator in another block: resolution follows the creator, not a fixed tag.
    ds = Dataset()
    ds.add_new(0x00090010, "LO", "OTHER")
    ds.add_new(0x00090011, "LO", "GEMS_IDEN_01")
    ds.add_new(0x00091104, "SH", "MOVED")
    ds.add_new(0x00091004, "SH", "WRONG")
    assert ev(leaf('(0009,"GEMS_IDEN_01",04)', "eq", "MOVED"), ds)
    assert not ev(leaf('(0009,"NOPE",04)', "exists"), ds)


def test_meta_conditions():
    assert ev({"meta": "calling_ae", "op": "eq", "value": "CT01"})
    assert ev({"meta": "called_ae", "op": "in", "value": ["AXIOM", "OTHER"]})
    assert ev({"meta": "source", "op": "eq", "value": "ct-scp"})
    assert ev({"meta": "source_ip", "op": "eq", "value": "10.1.2.3"})
    assert ev({"meta": "source_ip", "op": "cidr", "value": "10.0.0.0/8"})
    assert ev({"meta": "source_ip", "op": "cidr", "value": ["192.168.0.0/16", "10.1.2.0/24"]})
    assert not ev({"meta": "source_ip", "op": "cidr", "value": "10.1.3.0/24"})
    assert not ev({"meta": "calling_ae", "op": "eq", "value": "CT01"}, meta=ArrivalMeta())
    assert ev({"meta": "source_ip", "op": "cidr", "value": "::1/128"}, meta=ArrivalMeta(source_ip="::1"))


def test_combinators_nest():
    cond = {
        "all": [
            {"attribute": "Modality", "op": "eq", "value": "CT"},
            {"any": [
                {"attribute": "PatientID", "op": "startswith", "value": "X"},
                {"not": {"attribute": "StudyDate", "op": "lt", "value": "20240101"}},
            ]},
        ]
    }
    assert ev(cond)
    cond["all"][1]["any"][1]["not"]["op"] = "gt"
    assert not ev(cond)


def test_non_ascii_values_latin1_and_utf8():
    for charset, name in (("ISO_IR 100", "Müller^Jürgen"), ("ISO_IR 192", "Łukasz^Żółć")):
        ds = Dataset()
        ds.SpecificCharacterSet = charset
        ds.PatientName = name
        # Round trip through bytes so the value is decoded with the character set.
        from io import BytesIO

        from pydicom import dcmread
        from pydicom.filewriter import dcmwrite

        buf = BytesIO()
        dcmwrite(buf, ds, implicit_vr=False, little_endian=True)
        back = dcmread(BytesIO(buf.getvalue()), force=True)
        assert ev(leaf("PatientName", "startswith", name.split("^")[0]), back)
        assert ev(leaf("PatientName", "contains", name.split("^")[1].lower(), case_insensitive=True), back)


def test_config_errors_name_the_field():
    with pytest.raises(ConfigError, match=r"conditions.*regex"):
        compile_condition(Condition.model_validate(leaf("PatientID", "regex", "(")), "conditions")
    with pytest.raises(ConfigError, match="unknown DICOM keyword 'PatientNam'"):
        compile_condition(Condition.model_validate(leaf("PatientNam", "eq", "x")), "conditions")
    with pytest.raises(ValueError, match="exactly one"):
        Condition.model_validate({"attribute": "Modality", "meta": "source", "op": "eq", "value": "x"})
    with pytest.raises(ValueError, match="needs a list"):
        Condition.model_validate(leaf("Modality", "in", "CT"))
    with pytest.raises(ValueError, match="cidr"):
        Condition.model_validate(leaf("Modality", "cidr", "10.0.0.0/8"))
    with pytest.raises(ConfigError):
        TagPath("Seq[0]..X")


def test_compiled_conditions_pickle():
    node = compile_condition(Condition.model_validate({"all": [
        leaf("PatientID", "regex", "^PID"), leaf('(0009,"GEMS_IDEN_01",04)', "exists")]}), "c")
    again = pickle.loads(pickle.dumps(node))
    assert again.eval(EvalContext(make_ds(), META))
