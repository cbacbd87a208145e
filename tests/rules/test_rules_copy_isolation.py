"""A destination's copy never reaches back into the input: the cheap structural clone, the
lookup actions' reused elements and their direct store must leave the original data set
exactly as it was, even when the copy is then changed in place the way pydicom allows."""
import copy
from io import BytesIO
from pathlib import Path

import pytest
from pydicom import Dataset, Sequence, dcmread
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import FileMetaDataset
from pydicom.tag import BaseTag
from pydicom.uid import ExplicitVRLittleEndian

from axiom_dagster.ai.cache import AICache
from axiom_dagster.ai.standardize import target_for
from axiom_dagster.config.models import AxiomConfig
from axiom_dagster.ingest.arrival import ArrivalMeta
from axiom_dagster.rules import compile_rules
from axiom_dagster.rules.action_base import clone_dataset
from axiom_dagster.rules.attribute_actions import SetAction
from axiom_dagster.rules.lookup_actions import ElementCache, TextPut
from axiom_dagster.rules.paths import TagPath
from axiom_dagster.store.state import StateStore

META = ArrivalMeta(source="t")


def header(**extra) -> bytes:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.SOPInstanceUID = "1.2.826.0.1.3680043.10.77.1.1.1"
    ds.StudyDescription = "CT THORAX MIT KM"
    ds.PatientID = "PID-0042"
    ds.PatientName = "Doe^John"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    item = Dataset()
    item.SeriesDescription = "old"
    ds.ReferencedSeriesSequence = Sequence([item])
    for k, v in extra.items():
        setattr(ds, k, v)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    buf = BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def read(raw: bytes) -> Dataset:
    ds = dcmread(BytesIO(raw))
    # Some elements converted before the rules run (as validation does), the rest raw.
    ds.PatientName, ds.ImageType, ds.ReferencedSeriesSequence[0].SeriesDescription
    return ds


def encoded(ds: Dataset) -> bytes:
    buf = BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


@pytest.fixture(scope="module")
def lookup_engine(tmp_path_factory):
    """standardize (StudyDescription, warm cache) + crosswalk (PatientID) as in bench/rules_bench.py."""
    root = tmp_path_factory.mktemp("isolation")
    (root / "patients.csv").write_text("mrn,rid\nPID-0042,R-42\nPID-0043,R-43\n", encoding="utf-8")
    config = AxiomConfig.model_validate({
        "state_store": {"url": f"sqlite:///{root / 'state.db'}"},
        "destinations": [{"name": "a", "path": str(root / "a")}, {"name": "b", "path": str(root / "b")}],
        "default_destinations": ["*"],
        "crosswalks": {"patients": {"path": str(root / "patients.csv")}},
        "ai": {"providers": {"llm": {"type": "openai"}}, "vocabularies": {"exams": ["Chest CT", "Head CT"]}},
        "rulesets": [{"name": "std", "rules": [{"name": "lookups", "actions": [
            {"action": "standardize", "attribute": "StudyDescription", "vocabulary": "exams", "provider": "llm"},
            {"action": "crosswalk", "crosswalk": "patients", "match": {"mrn": "PatientID"}, "set": {"PatientID": "rid"}},
        ]}]}],
    })
    config.base_dir = root
    store = StateStore(config.state_store_url)
    store.migrate()
    t = target_for(config.ai, config.rulesets[0].rules[0].actions[0])
    AICache(store.engine).put(*t.key, t.vocabulary, {"CT THORAX MIT KM": "Chest CT"})
    return compile_rules(config, None, root)


def test_lookup_actions_change_the_copy_not_the_input(lookup_engine):
    raw = header()
    original = read(raw)
    before = encoded(read(raw))
    out = lookup_engine.morph(original, META, ["a"])
    work = out.copies[0].dataset
    assert out.copies[0].changed and work is not original
    assert (work.StudyDescription, work.PatientID) == ("Chest CT", "R-42")
    assert (original.StudyDescription, original.PatientID) == ("CT THORAX MIT KM", "PID-0042")
    # Changed in place afterwards, as pydicom lets a caller (and dcmwrite the file meta):
    work.PatientName = "Other^Name"
    work.ImageType.append("EXTRA")
    work.ReferencedSeriesSequence[0].SeriesDescription = "new"
    work.ReferencedSeriesSequence.append(Dataset())
    work.StudyDescription = "Head CT"
    work.file_meta.ImplementationVersionName = "CHANGED"
    work.file_meta.MediaStorageSOPInstanceUID = "1.2.3"
    encoded(work)
    assert encoded(original) == before
    assert original.PatientName == "Doe^John" and list(original.ImageType) == ["ORIGINAL", "PRIMARY", "AXIAL"]
    assert len(original.ReferencedSeriesSequence) == 1
    assert original.ReferencedSeriesSequence[0].SeriesDescription == "old"
    assert "ImplementationVersionName" not in original.file_meta or \
        original.file_meta.ImplementationVersionName != "CHANGED"


def test_every_copy_owns_its_elements(lookup_engine):
    """The reused lookup elements are copies: changing one instance's value in place changes
    no other instance, and no later result."""
    a = lookup_engine.morph(read(header()), META, ["a"]).copies[0].dataset
    b = lookup_engine.morph(read(header()), META, ["a"]).copies[0].dataset
    assert a["StudyDescription"] is not b["StudyDescription"] and a["PatientID"] is not b["PatientID"]
    a.StudyDescription = "mutated"  # in place: the element exists
    a.PatientID = "mutated"
    c = lookup_engine.morph(read(header()), META, ["a"]).copies[0].dataset
    assert (b.StudyDescription, b.PatientID) == ("Chest CT", "R-42")
    assert (c.StudyDescription, c.PatientID) == ("Chest CT", "R-42")


def test_two_destinations_get_separate_copies(lookup_engine):
    original = read(header())
    out = lookup_engine.morph(original, META, ["a", "b"])
    a, b = (c.dataset for c in out.copies)
    assert a is not b and a.file_meta is not b.file_meta and a["PatientName"] is not b["PatientName"]
    a.PatientName = "A^A"
    a.ReferencedSeriesSequence[0].SeriesDescription = "a"
    assert b.PatientName == "Doe^John" and b.ReferencedSeriesSequence[0].SeriesDescription == "old"
    assert original.PatientName == "Doe^John"


def test_generic_actions_leave_the_input_untouched(tmp_path):
    engine = compile_rules({"default_destinations": ["*"], "rulesets": [{"name": "r", "rules": [{
        "name": "edit", "record_original": True, "actions": [
            {"action": "set", "attribute": "ReferencedSeriesSequence[0].SeriesDescription", "value": "set"},
            {"action": "regex_replace", "attribute": "ImageType", "pattern": "AXIAL", "replacement": "CORONAL"},
            {"action": "prepend", "attribute": "PatientName", "value": "X"},
            {"action": "delete", "attribute": "PatientID"},
            {"action": "set", "attribute": '(0009,"AXIOM",01)', "vr": "LO", "value": "private"},
        ]}]}]}, None, tmp_path)
    raw = header()
    original = read(raw)
    before = encoded(read(raw))
    work = engine.morph(original, META, ["a"]).copies[0].dataset
    assert work.ReferencedSeriesSequence[0].SeriesDescription == "set" and "PatientID" not in work
    assert list(work.ImageType) == ["ORIGINAL", "PRIMARY", "CORONAL"] and work.PatientName == "XDoe^John"
    assert "OriginalAttributesSequence" in work
    assert encoded(original) == before and not original._private_blocks


def test_clone_matches_deepcopy_and_shares_only_raw_elements():
    ds = read(header())
    clone, deep = clone_dataset(ds), copy.deepcopy(ds)
    assert clone == deep == ds and clone.file_meta == ds.file_meta
    assert type(clone) is type(ds) and clone.filename == ds.filename and clone.preamble == ds.preamble
    for tag, elem in ds._dict.items():
        if isinstance(elem, RawDataElement):
            assert clone._dict[tag] is elem  # immutable tuples
        else:
            assert clone._dict[tag] is not elem and clone._dict[tag].__dict__.keys() == elem.__dict__.keys()
    assert clone.ImageType is not ds.ImageType
    assert clone.ReferencedSeriesSequence is not ds.ReferencedSeriesSequence
    assert clone.ReferencedSeriesSequence[0] is not ds.ReferencedSeriesSequence[0]
    assert clone._private_blocks == {} and clone._dict is not ds._dict


def test_direct_store_equals_dataset_setitem(lookup_engine):
    """The lookup put stores a standard element in the data set's dict itself; the result must
    be what Dataset.__setitem__ gives, down to the encoded bytes and the keys' type."""
    work = lookup_engine.morph(read(header()), META, ["a"]).copies[0].dataset
    expected = read(header())
    expected[0x00081030] = DataElement(0x00081030, "LO", "Chest CT")
    expected[0x00100020] = DataElement(0x00100020, "LO", "R-42")
    assert encoded(work) == encoded(expected)
    assert all(type(k) is BaseTag for k in work._dict)
    # A missing attribute has no answer: it stays missing.
    raw = header()
    ds = read(raw)
    del ds.StudyDescription
    out = lookup_engine.morph(ds, META, ["a"]).copies[0].dataset
    assert "StudyDescription" not in out and out.PatientID == "R-42"


def test_element_cache_is_bounded_and_never_shares_lists(monkeypatch):
    monkeypatch.setattr(ElementCache, "LIMIT", 3)
    cache = ElementCache()
    tag = BaseTag(0x00100020)
    for i in range(10):
        assert cache.element(tag, "LO", f"R-{i}").value == f"R-{i}"
        assert len(cache.elements) <= 3
    multi = cache.element(tag, "LO", "A\\B")
    assert list(multi.value) == ["A", "B"] and cache.element(tag, "LO", "A\\B").value is not multi.value
    first, again = cache.element(tag, "LO", "R-9"), cache.element(tag, "LO", "R-9")
    assert first is not again and first.__dict__ == again.__dict__
    assert again.__dict__ == DataElement(tag, "LO", "R-9").__dict__  # exactly what pydicom builds


def test_text_put_keys_stay_base_tags():
    """The direct store probes with a FastTag; a new attribute's key must still be the
    BaseTag that Dataset.__setitem__ stores, and a replaced one keeps its own key."""
    put = TextPut(SetAction(TagPath("PatientID"), None, "", "t"), ElementCache())
    ds = Dataset()
    ds.PatientName = "Doe^John"
    assert put.put(ds, "", "R-1") and ds.PatientID == "R-1"
    assert all(type(k) is BaseTag for k in ds._dict)
    key = next(k for k in ds._dict if k == 0x00100020)
    assert put.put(ds, "R-1", "R-2") and ds.PatientID == "R-2" and not put.put(ds, "R-2", "R-2")
    assert next(k for k in ds._dict if k == 0x00100020) is key
