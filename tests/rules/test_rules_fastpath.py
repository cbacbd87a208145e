"""The raw-element fast paths give exactly what the pydicom paths give."""
from __future__ import annotations

import pickle
from io import BytesIO

import pytest
from pydicom import Dataset, Sequence, dcmread
from pydicom.dataset import FileMetaDataset
from pydicom.filewriter import dcmwrite
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from axiom_dagster.ingest.arrival import ArrivalMeta
from axiom_dagster.deid import DeidOptions, DeidProfile, UIDMapper
from axiom_dagster.rules import compile_rules
from axiom_dagster.rules.action_base import clone_dataset
from axiom_dagster.rules.context import EvalContext
from axiom_dagster.rules.leaf import Leaf
from axiom_dagster.rules.paths import TagPath
from axiom_dagster.rules.readers import path_reader
from axiom_dagster.config.rules import Condition

KEY = b"test-secret-key-0123456789abcdef"

PATHS = [
    "PatientName", "InstitutionName", "StudyDescription", "ImageType", "ImageType[1]", "Modality",
    "StudyDate", "AcquisitionTime", "SliceThickness", "PixelSpacing", "InstanceNumber", "Rows",
    "ImagePositionPatient", "SOPInstanceUID", "StationName", "PatientComments", "OtherPatientIDs",
    "ImageComments", "EthnicGroup", "StationAETitle", "CTDIvol", "ContrastBolusAgent",
    "SourceImageSequence[*].ReferencedSOPInstanceUID", "SourceImageSequence[0].ReferencedSOPClassUID",
    "SourceImageSequence.ReferencedSOPClassUID", "SourceImageSequence[3].ReferencedSOPClassUID",
    "SourceImageSequence[*].SpecimenShortDescription", "SourceImageSequence",
    '(0019,"ACME CT",12)', '(0019,"ACME CT",14)', '(0019,"NOPE",12)', "(0019,1012)", "00191010",
    "AdmittingDiagnosesDescription", "LargestImagePixelValue",
]


def make(charset: str | None, name: str, desc: str, ts=ExplicitVRLittleEndian) -> bytes:
    ds = Dataset()
    if charset:
        ds.SpecificCharacterSet = charset
    ds.PatientName = name
    ds.InstitutionName = desc
    ds.StudyDescription = desc + "  "
    ds.ImageType = ["ORIGINAL", "", "AXIAL"]
    ds.Modality = "CT"
    ds.StudyDate = "20240315"
    ds.AcquisitionTime = "101520.123"
    ds.SliceThickness = "1.0"
    ds.PixelSpacing = ["0.68", " 0.68"]
    ds.InstanceNumber = "057"
    ds.Rows = 512
    ds.LargestImagePixelValue = 4095
    ds.ImagePositionPatient = ["-175", "-175", "-120.5"]
    ds.SOPInstanceUID = "1.2.3.4.5"
    ds.StationName = ""
    ds.PatientComments = desc + " text\\with backslash"
    ds.OtherPatientIDs = ["A", "B"]
    ds.EthnicGroup = "   "
    ds.StationAETitle = " CT01 "
    ds.CTDIvol = 8.5
    items = []
    for i in range(2):
        item = Dataset()
        item.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
        item.ReferencedSOPInstanceUID = f"1.2.3.{i}"
        if i:
            item.SpecimenShortDescription = desc
        items.append(item)
    ds.SourceImageSequence = Sequence(items)
    block = ds.private_block(0x0019, "ACME CT", create=True)
    block.add_new(0x12, "DS", "18")
    block.add_new(0x14, "LO", desc)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ts
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    buf = BytesIO()
    dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()


CASES = [
    (None, "Doe^John", "Thorax"),
    ("ISO_IR 100", "Müller^Jürgen", "Sankt Jürgen Straße"),
    ("ISO_IR 192", "Ŝanĉo^Ĵozefo", "Gerät ✓ 北京"),
    ("ISO_IR 192", "Doe^John", "plain ascii"),
    ("ISO 2022 IR 6\\ISO 2022 IR 87", "Yamada^Tarou=山田^太郎", "CT"),
]
SYNTAXES = [ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian]


# Cases that take the same decoding paths as another: ISO_IR 100 as ISO_IR 192 (a plain
# codec on non-ASCII bytes), ASCII under ISO_IR 192 as ASCII under the default.
_SAME_PATHS_AS_ANOTHER = {1, 3}


def _grid() -> list:
    """CASES x SYNTAXES for the long leaf-by-leaf comparisons. The inner loop
    (`-m "not slow"`) runs one cell per transfer syntax, each with a case that takes
    its own decoding path (default ASCII, UTF-8, ISO 2022 fallback); the full suite
    runs the whole grid."""
    params = []
    for i, (charset, name, desc) in enumerate(CASES):
        for j, ts in enumerate(SYNTAXES):
            inner = j == i % len(SYNTAXES) and i not in _SAME_PATHS_AS_ANOTHER
            marks = () if inner else (pytest.mark.slow,)
            params.append(pytest.param(charset, name, desc, ts, marks=marks, id=f"{charset}-{name}-{desc}-{ts.name}"))
    return params


GRID = _grid()


LEAF_OPS = [("eq", "CT"), ("eq", 512), ("eq", 1.0), ("gt", 5), ("lt", "12:00"), ("ge", "20240101"),
            ("contains", "r"), ("regex", r"^\d"), ("in", ["CT", "18"]), ("ne", "AXIAL"), ("le", "1.2.3.1"),
            ("startswith", "M"), ("eq", "1.2.3.1")]


class _Fixed:
    """An evaluation context with given values (to compare leaf results)."""

    def __init__(self, values):
        self.v = values
        self.results = {}

    def values(self, path):
        return self.v


@pytest.mark.parametrize("ts", SYNTAXES, ids=lambda t: t.name)
@pytest.mark.parametrize("charset,name,desc", CASES)
def test_fast_values_equal_pydicom(charset, name, desc, ts):
    raw = make(charset, name, desc, ts)
    for text in PATHS:
        path = TagPath(text)
        fast = EvalContext(dcmread(BytesIO(raw), stop_before_pixels=True), ArrivalMeta()).values(path)
        slow = path.values(dcmread(BytesIO(raw), stop_before_pixels=True))
        assert [str(v) for v in fast[0]] == [str(v) for v in slow[0]], text
        for op, value in LEAF_OPS:
            leaf = Leaf(Condition(attribute=text, op=op, value=value), "t")
            f = leaf._eval(_Fixed(fast))
            sl = leaf._eval(_Fixed(slow))
            assert f == sl, (text, op, value)
        assert fast[1:] == slow[1:], text


def test_fast_values_on_converted_elements():
    ds = dcmread(BytesIO(make("ISO_IR 100", "Müller^Jürgen", "Straße")), stop_before_pixels=True)
    ds.PatientName, ds.Rows  # converted now: the fast path reads DataElements
    ds.SourceImageSequence  # a converted sequence: pydicom path
    for text in PATHS:
        path = TagPath(text)
        fast = EvalContext(ds, ArrivalMeta()).values(path)
        assert fast == path.values(ds) or [str(v) for v in fast[0]] == [str(v) for v in path.values(ds)[0]], text


def rules_config() -> dict:
    leaves = [
        {"attribute": "Modality", "op": "eq", "value": "CT"},
        {"attribute": "InstitutionName", "op": "contains", "value": "jürgen", "case_insensitive": True},
        {"attribute": "PatientName", "op": "regex", "value": "^Müller"},
        {"attribute": "SliceThickness", "op": "le", "value": 1.5},
        {"attribute": "PixelSpacing", "op": "eq", "value": 0.68, "match": "all"},
        {"attribute": "ImageType", "op": "eq", "value": "AXIAL"},
        {"attribute": "StudyDate", "op": "ge", "value": "2024-01-01"},
        {"attribute": "AcquisitionTime", "op": "lt", "value": "12:00"},
        {"attribute": "StationName", "op": "ne", "value": "X"},
        {"attribute": "EthnicGroup", "op": "exists"},
        {"attribute": "SourceImageSequence[*].ReferencedSOPInstanceUID", "op": "eq", "value": "1.2.3.1"},
        {"attribute": '(0019,"ACME CT",12)', "op": "gt", "value": 5},
        {"attribute": "ContrastBolusAgent", "op": "not_exists"},
        {"meta": "calling_ae", "op": "eq", "value": "CT01"},
    ]
    rules = []
    for i in range(40):
        a, b, c = leaves[i % 14], leaves[(i * 5 + 3) % 14], leaves[(i * 3 + 1) % 14]
        cond = {"all": [a, {"any": [b, {"not": c}]}]} if i % 3 else {"any": [a, {"all": [b, c]}]}
        rules.append({"name": f"r{i}", "conditions": cond, "destinations": ["d"],
                      **({"sources": ["other"]} if i % 7 == 0 else {}),
                      **({"enabled": False} if i % 11 == 0 else {})})
    return {"rulesets": [
        {"name": "a", "rules": rules[:20]},
        {"name": "b", "mode": "first_match", "rules": rules[20:]},
        {"name": "c", "sources": ["nope"], "rules": [{"name": "x", "destinations": ["d"]}]},
    ]}


@pytest.mark.parametrize("ts", SYNTAXES, ids=lambda t: t.name)
@pytest.mark.parametrize("charset,name,desc", CASES)
def test_generated_matcher_equals_interpreted(charset, name, desc, ts):
    engine = compile_rules(rules_config())
    engine = pickle.loads(pickle.dumps(engine))  # the generated code is rebuilt after pickling
    raw = make(charset, name, desc, ts)
    meta = ArrivalMeta(source="ct-scp", calling_ae="CT01")
    fast = [r.qualname for r in engine.match(dcmread(BytesIO(raw), stop_before_pixels=True), meta)]
    traces: list = []
    slow = [r.qualname for r in engine.match(dcmread(BytesIO(raw), stop_before_pixels=True), meta, traces)]
    assert fast == slow
    assert fast  # the fixture matches something


def _dump(ds: Dataset) -> list:
    out = []
    for elem in ds:
        if elem.VR == "SQ":
            out.append((int(elem.tag), [_dump(i) for i in elem.value]))
        else:
            v = elem.value
            out.append((int(elem.tag), elem.VR, list(v) if isinstance(v, list) or type(v).__name__ == "MultiValue" else v))
    return out


def _slow_deid(profile: DeidProfile, ds: Dataset) -> None:
    """The profile applied to fully converted elements (every fast path skipped)."""
    for elem in ds.iterall():
        pass
    profile.apply(ds)


@pytest.mark.parametrize("ts", SYNTAXES, ids=lambda t: t.name)
@pytest.mark.parametrize("charset,name,desc", CASES)
@pytest.mark.parametrize("opts", [
    DeidOptions(retain_long_modified_dates=True, clean_descriptors=True),
    DeidOptions(),
    DeidOptions(retain_uids=True, retain_safe_private=True, retain_patient_characteristics=True),
])
def test_deid_raw_path_equals_converted_path(charset, name, desc, ts, opts):
    raw = make(charset, name, desc, ts)
    profile = DeidProfile("t", opts, UIDMapper(KEY))
    fast = clone_dataset(dcmread(BytesIO(raw), stop_before_pixels=True))
    profile.apply(fast)
    slow = dcmread(BytesIO(raw), stop_before_pixels=True)
    _slow_deid(profile, slow)
    assert _dump(fast) == _dump(slow)
    assert fast.file_meta.MediaStorageSOPInstanceUID == slow.file_meta.MediaStorageSOPInstanceUID
    # and it writes and reads back the same
    written = []
    for d in (fast, slow):
        buf = BytesIO()
        dcmwrite(buf, d, enforce_file_format=True)
        written.append(buf.getvalue())
    assert written[0] == written[1]


def test_deid_multivalued_and_empty_dates_and_uids():
    ds = Dataset()
    ds.PatientID = "P1"
    ds.StudyDate = "20240315"
    ds.AcquisitionDateTime = "20240315101520.5+0100"
    ds.ContentDate = ""
    ds.SeriesDate = "bad"
    ds.add_new(0x00080020, "DA", "20240315")
    ds.InstanceCreationDate = "20240315"
    ds.add_new(0x00181204, "DA", ["20240101", "", "20240301"])  # DateOfLastCalibration: multi-valued
    ds.SOPInstanceUID = "1.2.3"
    ds.add_new(0x00081155, "UI", ["1.2.3", "1.2.4"])
    ds.StudyInstanceUID = ""
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.file_meta.MediaStorageSOPInstanceUID = "1.2.3"
    buf = BytesIO()
    dcmwrite(buf, ds, enforce_file_format=True)
    profile = DeidProfile("t", DeidOptions(retain_long_modified_dates=True), UIDMapper(KEY))
    fast = dcmread(BytesIO(buf.getvalue()))
    profile.apply(fast)
    slow = dcmread(BytesIO(buf.getvalue()))
    _slow_deid(profile, slow)
    assert _dump(fast) == _dump(slow)


COMPILED_OPS = LEAF_OPS + [
    ("eq", "thorax"), ("ne", "CT"), ("ne", 512), ("gt", "20240101"), ("le", 1.5), ("ge", "10:00"),
    ("endswith", "e"), ("not_in", ["CT", "MR"]), ("exists", None), ("not_exists", None), ("eq", True),
    ("lt", "abc"), ("eq", "2024-03-15"),
]


@pytest.mark.parametrize("charset,name,desc,ts", GRID)
def test_compiled_leaf_equals_eval(charset, name, desc, ts):
    """Leaf.compiled() (specialised reader and predicate) == Leaf._eval, per path and op."""
    raw = make(charset, name, desc, ts)
    meta = ArrivalMeta(calling_ae="CT01", source_ip="10.1.2.3")
    for text in PATHS:
        for op, value in COMPILED_OPS:
            for extra in ({}, {"case_insensitive": True}, {"match": "all"}):
                leaf = Leaf(Condition(attribute=text, op=op, value=value, **extra), "t")
                fast = leaf.compiled()(EvalContext(dcmread(BytesIO(raw), stop_before_pixels=True), meta))
                slow = leaf._eval(EvalContext(dcmread(BytesIO(raw), stop_before_pixels=True), meta))
                assert fast == slow, (text, op, value, extra)
    for cond in (Condition(meta="source_ip", op="cidr", value=["10.0.0.0/8"]),
                 Condition(meta="source_ip", op="cidr", value="192.168.0.0/16"),
                 Condition(meta="calling_ae", op="eq", value="ct01", case_insensitive=True)):
        leaf = Leaf(cond, "t")
        fn = leaf.compiled()
        for _ in range(2):  # the second answer comes from the cidr memo
            ctx = EvalContext(dcmread(BytesIO(raw), stop_before_pixels=True), meta)
            assert fn(ctx) == leaf._eval(ctx)


def test_compiled_leaf_on_converted_elements():
    raw = make("ISO_IR 100", "Müller^Jürgen", "Straße")
    ds = dcmread(BytesIO(raw), stop_before_pixels=True)
    for elem in ds:  # every element converted: the readers take the pydicom path
        pass
    for text in PATHS:
        for op, value in COMPILED_OPS:
            leaf = Leaf(Condition(attribute=text, op=op, value=value), "t")
            assert leaf.compiled()(EvalContext(ds, ArrivalMeta())) == leaf._eval(EvalContext(ds, ArrivalMeta())), (text, op)


def test_private_creator_after_a_gap():
    """Creator blocks are probed from 0x10; one after a free block is still found."""
    ds = Dataset()
    ds.Modality = "CT"
    ds.add_new(0x00190010, "LO", "OTHER")
    ds.add_new(0x00191012, "DS", "1")
    ds.add_new(0x00190012, "LO", "ACME CT")  # block 0x11 free
    ds.add_new(0x00191212, "DS", "18")
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.file_meta.MediaStorageSOPInstanceUID = "1.2.3"
    buf = BytesIO()
    dcmwrite(buf, ds, enforce_file_format=True)
    for text in ('(0019,"ACME CT",12)', '(0019,"OTHER",12)', '(0019,"NOPE",12)'):
        path = TagPath(text)
        fast = EvalContext(dcmread(BytesIO(buf.getvalue())), ArrivalMeta()).values(path)
        slow = path.values(dcmread(BytesIO(buf.getvalue())))
        assert [str(v) for v in fast[0]] == [str(v) for v in slow[0]] and fast[1:] == slow[1:], text


@pytest.mark.parametrize("charset,name,desc", CASES)
def test_deid_clean_text_with_identifiers_in_descriptors(charset, name, desc):
    """Clean on raw text: unchanged elements stay raw; ones naming the patient are scrubbed."""
    ds = dcmread(BytesIO(make(charset, name, desc)), stop_before_pixels=True)
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    buf = BytesIO()
    first = name.split("^")[0]
    ds.StudyDescription = f"CT for {first} thorax"
    ds.SeriesDescription = "nothing to see"
    ds.ImageComments = f"{first.upper()}\\x"
    ds.PatientID = "PID-0042"
    ds.AdmittingDiagnosesDescription = "pid-0042 follow-up"
    dcmwrite(buf, ds, enforce_file_format=True)
    profile = DeidProfile("t", DeidOptions(clean_descriptors=True), UIDMapper(KEY))
    fast = dcmread(BytesIO(buf.getvalue()), stop_before_pixels=True)
    profile.apply(fast)
    slow = dcmread(BytesIO(buf.getvalue()), stop_before_pixels=True)
    _slow_deid(profile, slow)
    assert _dump(fast) == _dump(slow)
    if charset is None or "2022" not in charset:
        assert first.lower() not in str(fast.StudyDescription).lower()
        assert "0042" not in str(fast.AdmittingDiagnosesDescription)


def test_matcher_source_is_inspectable():
    """The generated matcher's text: compiles, names each leaf and attribute it reads."""
    engine = compile_rules(rules_config())
    src = engine.matcher_source()
    compile(src, "<test>", "exec")
    assert "def _match(" in src
    import re

    assert re.search(r"^# v\d+: Modality eq 'CT'$", src, re.M)
    assert re.search(r"^# v\d+: InstitutionName contains 'jürgen'$", src, re.M)
    assert "F[" in src  # fused leaves (standard, private, metadata, unshared sequence paths)
    # a sequence path read by two leaves: one shared read (aN), a value test per leaf
    seq = "SourceImageSequence[*].ReferencedSOPInstanceUID"
    shared = compile_rules({"rulesets": [{"name": "s", "rules": [
        {"name": "a", "conditions": {"attribute": seq, "op": "eq", "value": "1.2.3.1"}, "destinations": ["d"]},
        {"name": "b", "conditions": {"attribute": seq, "op": "contains", "value": "3"}, "destinations": ["d"]},
        {"name": "c", "conditions": {"attribute": seq, "op": "exists"}, "destinations": ["d"]}]}]})
    src2 = shared.matcher_source()
    assert "T[" in src2 and "A[" in src2 and "F[" not in src2
    assert re.search(r"^# a\d+: SourceImageSequence", src2, re.M)
    for raw in (make(None, "Doe^John", "Thorax"), make(None, "Doe^John", "Thorax", ImplicitVRLittleEndian)):
        fast = [r.name for r in shared.match(dcmread(BytesIO(raw), stop_before_pixels=True), ArrivalMeta())]
        slow = [r.name for r in shared.match(dcmread(BytesIO(raw), stop_before_pixels=True), ArrivalMeta(), [])]
        assert fast == slow
    assert "# ruleset 'b' (first_match)" in src and "elif" in src
    assert engine._fast_matcher() is not None


def test_fast_tag_finds_the_same_elements():
    from pydicom.tag import BaseTag

    from axiom_dagster.dicom.fastvalues import FastTag

    ds = dcmread(BytesIO(make("ISO_IR 100", "Müller^Jürgen", "Straße")), stop_before_pixels=True)
    d = ds._dict
    d[0x00091001] = d[0x00080060]  # a plain int key, as a hand-built dict could hold
    for tag in [*map(int, d), 0x00091001, 0x00100011, 0xFFFFFFFF]:
        probe = FastTag(tag)
        assert d.get(probe) is d.get(tag) and (probe in d) == (tag in d), hex(tag)
        assert probe == BaseTag(tag) and BaseTag(tag) == probe and hash(probe) == hash(tag)


def test_generated_matcher_random_trees():
    """Random condition trees (shared leaves in every position, gates, first_match,
    disabled rules): the generated matcher, which reads the results known to be set
    without testing them, matches the interpreted path."""
    import random

    rng = random.Random(7)
    leaves = [
        {"attribute": "Modality", "op": "eq", "value": "CT"},
        {"attribute": "Modality", "op": "eq", "value": "MR"},
        {"attribute": "StudyDate", "op": "ge", "value": "2024-01-01"},
        {"attribute": "ImageType", "op": "eq", "value": "AXIAL"},
        {"attribute": "ImageType[1]", "op": "exists"},
        {"attribute": "ContrastBolusAgent", "op": "not_exists"},
        {"attribute": "SourceImageSequence[*].ReferencedSOPInstanceUID", "op": "eq", "value": "1.2.3.1"},
        {"attribute": "SourceImageSequence[0].ReferencedSOPInstanceUID", "op": "exists"},
        {"attribute": '(0019,"ACME CT",12)', "op": "gt", "value": 5},
        {"attribute": '(0019,"ACME CT",14)', "op": "contains", "value": "a", "case_insensitive": True},
        {"meta": "calling_ae", "op": "eq", "value": "CT01"},
    ]

    def tree(depth):
        if depth == 0 or rng.random() < 0.3:
            return rng.choice(leaves)
        kind = rng.choice(["all", "any", "not"])
        if kind == "not":
            return {"not": tree(depth - 1)}
        return {kind: [tree(depth - 1) for _ in range(rng.randint(0, 3))]}

    raws = [make(c, n, d, ts) for (c, n, d) in CASES[:3] for ts in SYNTAXES[:2]]
    for _ in range(25):
        rulesets = []
        for k in range(3):
            rules = [{"name": f"r{k}{i}", "conditions": tree(3), "destinations": ["d"],
                      **({"sources": ["other"]} if rng.random() < 0.1 else {}),
                      **({"enabled": False} if rng.random() < 0.1 else {})} for i in range(8)]
            rulesets.append({"name": f"s{k}", "rules": rules, "mode": rng.choice(["all_matches", "first_match"]),
                             **({"sources": ["ct-scp"]} if rng.random() < 0.3 else {})})
        engine = compile_rules({"rulesets": rulesets})
        assert engine._fast_matcher() is not None
        for raw in raws:
            meta = ArrivalMeta(source="ct-scp", calling_ae=rng.choice(["CT01", "X"]))
            fast = [r.qualname for r in engine.match(dcmread(BytesIO(raw), stop_before_pixels=True), meta)]
            slow = [r.qualname for r in engine.match(dcmread(BytesIO(raw), stop_before_pixels=True), meta, [])]
            assert fast == slow, engine.matcher_source()


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom on the invalid IS/DS spellings
@pytest.mark.parametrize("vr,tag", [("IS", 0x00200013), ("DS", 0x00180050), ("LO", 0x00081030), ("SH", 0x00081010)])
def test_raw_number_and_text_values_equal_pydicom(vr, tag):
    """The single-value shortcuts of the decoders (digits, one '.', no backslash)."""
    from pydicom.dataelem import RawDataElement
    from pydicom.tag import BaseTag

    texts = [b"120", b"057", b"1.0", b".5", b"1.", b" 12 ", b"1e3", b"+1", b"-2.50", b"1.5", b".", b"1..2",
             b"12 ", b"  ", b"1\\2", b"1\\", b"\\", b"abc", b"1 2", b"\x001", b"1\x00", b"AB \\ C ", b"x\\\\y"]
    path = TagPath(f"({tag >> 16:04X},{tag & 0xFFFF:04X})")
    for text in texts:
        for little in (True, False):
            def fresh():
                ds = Dataset()
                ds._dict[BaseTag(tag)] = RawDataElement(BaseTag(tag), vr, len(text), text, 0, False, little)
                return ds
            try:
                slow = path.values(fresh())
            except Exception:  # pydicom refuses the value: the fast path must not answer
                slow = None
            fast = EvalContext(fresh(), ArrivalMeta()).values(path)
            if slow is not None:
                assert [str(v) for v in fast[0]] == [str(v) for v in slow[0]] and fast[1:] == slow[1:], text


def _seq_bytes(items, defined: bool, implicit: bool) -> bytes:
    """A raw sequence value: items of (tag, VR, value bytes) or (tag, nested items)."""
    import struct

    def elem(tag, vr, value):
        head = struct.pack("<HH", tag >> 16, tag & 0xFFFF)
        if implicit:
            return head + struct.pack("<L", len(value)) + value
        if vr in ("SQ", "OB", "UN", "UT"):
            return head + vr.encode() + b"\0\0" + struct.pack("<L", len(value)) + value
        return head + vr.encode() + struct.pack("<H", len(value)) + value

    out = b""
    for item in items:
        body = b""
        for e in item:
            if len(e) == 2:  # nested sequence, undefined length
                tag, sub = e
                head = struct.pack("<HH", tag >> 16, tag & 0xFFFF)
                head += struct.pack("<L", 0xFFFFFFFF) if implicit else b"SQ\0\0" + struct.pack("<L", 0xFFFFFFFF)
                body += head + _seq_bytes(sub, False, implicit) + struct.pack("<HHL", 0xFFFE, 0xE0DD, 0)
            else:
                body += elem(*e)
        if defined:
            out += struct.pack("<HHL", 0xFFFE, 0xE000, len(body)) + body
        else:
            out += struct.pack("<HHL", 0xFFFE, 0xE000, 0xFFFFFFFF) + body + struct.pack("<HHL", 0xFFFE, 0xE00D, 0)
    return out


@pytest.mark.parametrize("defined", [True, False])
@pytest.mark.parametrize("implicit", [True, False])
def test_raw_sequence_walk_equals_pydicom(defined, implicit):
    """Seq[*].X / Seq[n].X from the raw items (defined and undefined lengths, nested
    sequences, an item with its own character set) == pydicom's."""
    from pydicom.dataelem import RawDataElement
    from pydicom.tag import BaseTag

    uid, desc, cs = 0x00081150, 0x00081030, 0x00080005
    nested = (0x00081115, [[(uid, "UI", b"1.2.9\0")], [(desc, "LO", b"inner ")]])
    variants = [
        [[(uid, "UI", b"1.2.3\0"), (desc, "LO", b"a ")], [(desc, "LO", b"b\\c ")], [nested, (uid, "UI", b"1.2.4\0")]],
        [[nested], [(uid, "UI", b"1.2.5\0"), (cs, "CS", b"ISO_IR 100")]],
        [[(cs, "CS", b"ISO_IR 100"), (uid, "UI", b"1.2.6\0")]],
        [[], [(desc, "LO", b"")]],
    ]
    paths = [f"ReferencedImageSequence{i}.{kw}" for i in ("[*]", "[0]", "[1]", "[2]", "[5]", "")
             for kw in ("ReferencedSOPClassUID", "StudyDescription")]
    seq_tag = 0x00081140
    for items in variants:
        buf = _seq_bytes(items, defined, implicit)
        for text in paths:
            path = TagPath(text)

            def fresh():
                ds = Dataset()
                ds._dict[BaseTag(seq_tag)] = RawDataElement(
                    BaseTag(seq_tag), None if implicit else "SQ", 0xFFFFFFFF, buf, 0, implicit, True)
                return ds
            slow = path.values(fresh())
            fast = EvalContext(fresh(), ArrivalMeta()).values(path)
            assert [str(v) for v in fast[0]] == [str(v) for v in slow[0]] and fast[1:] == slow[1:], (text, items)
            reader = path_reader(path)
            hit = reader(fresh()._dict, EvalContext(fresh(), ArrivalMeta()))
            assert [str(v) for v in hit[0]] == [str(v) for v in slow[0]] and hit[1:] == slow[1:], (text, items)


FUSED_OPS = COMPILED_OPS + [("in", ["ORIGINAL", "X"]), ("not_in", ["ORIGINAL"]), ("ne", "ORIGINAL"),
                            ("eq", "ORIGINAL"), ("eq", "Doe^John"), ("in", ["  CT "]), ("ne", "")]


def _fused_leaves(texts):
    """(leaf, its fused test, what) for each path in `texts`, operator and option that
    fused_test handles."""
    from axiom_dagster.rules.fused import fused_test

    for text in texts:
        for op, value in FUSED_OPS:
            for extra in ({}, {"case_insensitive": True}, {"match": "all"}):
                leaf = Leaf(Condition(attribute=text, op=op, value=value, **extra), "t")
                fused = fused_test(leaf)
                if fused is not None:
                    yield leaf, fused, (text, op, value, extra)


@pytest.mark.parametrize("charset,name,desc,ts", GRID)
def test_fused_leaf_equals_eval(charset, name, desc, ts):
    """fused.fused_test (read, decode and test in one call; single ASCII values
    inline) == Leaf._eval, per path, op and option, on raw and on converted elements."""
    raw = make(charset, name, desc, ts)
    meta = ArrivalMeta()
    converted = dcmread(BytesIO(raw), stop_before_pixels=True)
    for _ in converted:  # every element converted: the shared reader's pydicom path
        pass
    n = 0
    for leaf, fused, what in _fused_leaves(PATHS + ["PatientAge", "PatientName[0]", "ImageType[0]", "ImageType[5]", "Columns"]):
        n += 1
        ds = dcmread(BytesIO(raw), stop_before_pixels=True)
        fast = fused(ds._dict, EvalContext(ds, meta))
        slow = leaf._eval(EvalContext(dcmread(BytesIO(raw), stop_before_pixels=True), meta))
        assert fast == slow, what
        assert fused(converted._dict, EvalContext(converted, meta)) == slow, what
    assert n > 500


ODD_VRS = [("IS", 0x00200013), ("DS", 0x00180050), ("LO", 0x00081030), ("SH", 0x00081010), ("CS", 0x00080060),
           ("PN", 0x00100010), ("LT", 0x00204000), ("AE", 0x00081010), ("US", 0x00280010), ("FD", 0x00189345)]
# Byte order changes only the binary decoders: the inner loop runs big endian for those.
ODD_GRID = [pytest.param(vr, tag, little, id=f"{vr}-{'little' if little else 'big'}",
                         marks=() if little or vr in ("US", "FD") else (pytest.mark.slow,))
            for vr, tag in ODD_VRS for little in (True, False)]


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom on the invalid IS/DS spellings
@pytest.mark.parametrize("vr,tag,little", ODD_GRID)
def test_fused_leaf_on_odd_raw_values(vr, tag, little):
    """fused_test's single-value shortcuts vs Leaf._eval on the spellings the decoders
    care about (padding, backslashes, empty values, numbers pydicom refuses), each byte
    order, the dictionary VR and another explicit VR."""
    from pydicom.dataelem import RawDataElement
    from pydicom.tag import BaseTag

    from axiom_dagster.rules.fused import fused_test

    texts = [b"120", b"057", b"1.0", b".5", b"1.", b" 12 ", b"1e3", b"+1", b"-2.50", b"1.5", b".", b"1..2",
             b"12 ", b"  ", b"1\\2", b"1\\", b"\\", b"abc", b"1 2", b"\x001", b"1\x00", b"AB \\ C ", b"x\\\\y",
             b"CT", b"CT ", b" CT", b"CT\x00", b"", b"\x1b$B", b"CT\\MR", b"\tCT"]
    path = f"({tag >> 16:04X},{tag & 0xFFFF:04X})"
    ops = [("eq", "CT"), ("ne", "CT"), ("in", ["CT", "12"]), ("not_in", ["CT"]), ("gt", 5), ("le", 12),
           ("eq", 12), ("startswith", "C"), ("eq", "AB"), ("regex", r"^\d")]
    # Compiled once and reused on every value, as the engine reuses them on every instance.
    leaves = []
    for op, value in ops:
        for extra in ({}, {"match": "all"}, {"case_insensitive": True}):
            for suffix in ("", "[0]", "[1]"):
                leaf = Leaf(Condition(attribute=path + suffix, op=op, value=value, **extra), "t")
                fused = fused_test(leaf)
                assert fused is not None
                leaves.append((leaf, fused, (op, extra, suffix)))
    for text in texts:
        for elem_vr in (vr, None, "UN"):
            def fresh():
                ds = Dataset()
                ds._dict[BaseTag(tag)] = RawDataElement(BaseTag(tag), elem_vr, len(text), text, 0,
                                                        elem_vr is None, little)
                return ds
            for leaf, fused, how in leaves:
                try:
                    slow = leaf._eval(EvalContext(fresh(), ArrivalMeta()))
                except Exception:  # pydicom refuses the value
                    continue
                ds = fresh()
                assert fused(ds._dict, EvalContext(ds, ArrivalMeta())) == slow, (text, elem_vr, how)


def test_fused_meta_leaves_equal_eval():
    """fused_test on arrival metadata == Leaf._eval (the cidr answer memo included)."""
    from axiom_dagster.rules.fused import fused_test

    metas = [ArrivalMeta(calling_ae="CT01", source_ip="10.1.2.3"), ArrivalMeta(calling_ae="", source_ip=None),
             ArrivalMeta(calling_ae=" ct01 ", source_ip="192.168.1.1")]
    for cond in (Condition(meta="source_ip", op="cidr", value=["10.0.0.0/8"]),
                 Condition(meta="calling_ae", op="eq", value="ct01", case_insensitive=True),
                 Condition(meta="calling_ae", op="ne", value="CT01"),
                 Condition(meta="calling_ae", op="not_in", value=["CT01"])):
        leaf = Leaf(cond, "t")
        fused = fused_test(leaf)
        for meta in metas:
            for _ in range(2):
                ds = Dataset()
                assert fused(ds._dict, EvalContext(ds, meta)) == leaf._eval(EvalContext(ds, meta)), (cond, meta)


def _check_fused_private(raw: bytes) -> None:
    """fused_test on private attributes (creator found, missing; raw and converted
    elements) == Leaf._eval."""
    texts = ['(0019,"ACME CT",12)', '(0019,"ACME CT",14)', '(0019,"NOPE",12)', '(0019,"ACME CT",12)[0]',
             '(0019,"ACME CT",12)[1]']
    for leaf, fused, what in _fused_leaves(texts):
        slow = leaf._eval(EvalContext(dcmread(BytesIO(raw), stop_before_pixels=True), ArrivalMeta()))
        ds = dcmread(BytesIO(raw), stop_before_pixels=True)
        assert fused(ds._dict, EvalContext(ds, ArrivalMeta())) == slow, what
        for _ in ds:
            pass
        assert fused(ds._dict, EvalContext(ds, ArrivalMeta())) == slow, what


@pytest.mark.parametrize("charset,name,desc,ts", GRID)
def test_fused_private_leaves_equal_eval(charset, name, desc, ts):
    _check_fused_private(make(charset, name, desc, ts))


def test_fused_private_leaf_creator_after_another_block():
    gap = Dataset()
    gap.add_new(0x00190010, "LO", "OTHER")
    gap.add_new(0x00190011, "LO", "ACME CT")
    gap.add_new(0x00191112, "DS", "7")
    gap.add_new(0x00191012, "DS", "1")
    gap.file_meta = FileMetaDataset()
    gap.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    gap.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    gap.file_meta.MediaStorageSOPInstanceUID = "1.2.3"
    buf = BytesIO()
    dcmwrite(buf, gap, enforce_file_format=True)
    _check_fused_private(buf.getvalue())
