"""DICOMweb source against a real Orthanc (DICOMweb plugin): QIDO filters and paging, WADO-RS
whole-study retrieval landing data sets byte-identical to Orthanc's, resumable retrieval."""
from datetime import date
from io import BytesIO
from pathlib import Path

from pydicom import dcmread

from axiom_dagster.sources.dicomweb import DicomwebStudySource
from axiom_dagster.sources.sink import StudySink
from axiom_dagster.store.state import StateStore
from tests.helpers import make_config
from tests.sources.support import dicomweb_source, ledger_sops, load_archive, zone_for

WHOLE_RANGE = (date(2024, 1, 1), date(2024, 12, 31))


def _setup(tmp_path, orthanc):
    archive = load_archive(orthanc, tmp_path / "archive")
    config = make_config(tmp_path, f"sqlite:///{tmp_path / 'state.db'}")
    store = StateStore(config.state_store_url)
    store.migrate()
    return archive, config, store


def test_qido_finds_studies_by_date_range_filter_and_pages(tmp_path, orthanc):
    archive, _config, _store = _setup(tmp_path, orthanc)
    source = DicomwebStudySource(dicomweb_source(orthanc))
    everything = source.find_studies(*WHOLE_RANGE)
    assert {s.study_uid for s in everything.studies} == set(archive)
    assert all(s.instances == 3 for s in everything.studies)

    day = sorted({a["date"] for a in archive.values()})[0]
    one_day = source.find_studies(date.fromisoformat(f"{day[:4]}-{day[4:6]}-{day[6:]}"), date.fromisoformat(f"{day[:4]}-{day[4:6]}-{day[6:]}"))
    assert {s.study_uid for s in one_day.studies} == {u for u, a in archive.items() if a["date"] == day}

    pages, offset = [], 0
    while True:
        page = source.find_studies(*WHOLE_RANGE, offset=offset, limit=4)
        pages.append(page.studies)
        offset += len(page.studies)
        if not page.more:
            break
    assert [len(p) for p in pages] == [4, 2]
    assert {s.study_uid for p in pages for s in p} == set(archive)

    uid = next(iter(archive))
    exact = source.find_studies(*WHOLE_RANGE, extra={"StudyInstanceUID": uid})
    assert [s.study_uid for s in exact.studies] == [uid]
    filtered = DicomwebStudySource(dicomweb_source(orthanc, filters={"Modality": "NOPE"}))
    assert filtered.find_studies(*WHOLE_RANGE).studies == []


def test_wado_retrieval_lands_byte_identical_instances_once(tmp_path, orthanc):
    archive, config, store = _setup(tmp_path, orthanc)
    source = DicomwebStudySource(dicomweb_source(orthanc))
    study = next(s for s in source.find_studies(*WHOLE_RANGE).studies)
    zone = zone_for(config, store)
    with StudySink(zone, source.name, study.study_uid) as sink:
        outcome = source.retrieve_study(study, sink)
    assert outcome.ok and outcome.fetched == 3 and outcome.skipped == 0
    assert set(ledger_sops(store)) == archive[study.study_uid]["sops"]

    with store.engine.connect() as conn:
        landed = conn.exec_driver_sql("SELECT sop_uid, path, source FROM ledger").all()
    for sop, path, src in landed:
        assert src == "orthanc-web"
        ours = Path(path).read_bytes()
        theirs = orthanc.file_by_sop_uid(sop)
        assert _dataset_bytes(ours) == _dataset_bytes(theirs)
        assert dcmread(path).pixel_array.shape == (16, 16)  # pixel data, not metadata only

    # Retrieving again (a re-run after a crash) lands nothing twice.
    with StudySink(zone, source.name, study.study_uid) as sink:
        again = source.retrieve_study(study, sink)
    assert again.ok and again.fetched == 0 and again.skipped == 3
    assert len(ledger_sops(store)) == 3


def test_transfer_syntax_preference_is_honoured(tmp_path, orthanc):
    archive, config, store = _setup(tmp_path, orthanc)
    implicit = "1.2.840.10008.1.2"
    source = DicomwebStudySource(dicomweb_source(orthanc, transfer_syntax=[implicit]))
    study = source.find_studies(*WHOLE_RANGE).studies[0]
    with StudySink(zone_for(config, store), source.name, study.study_uid) as sink:
        outcome = source.retrieve_study(study, sink)
    assert outcome.fetched == 3
    with store.engine.connect() as conn:
        syntaxes = set(conn.exec_driver_sql("SELECT transfer_syntax_uid FROM ledger").scalars())
    assert syntaxes == {implicit}


def test_unreachable_server_is_a_named_http_error(tmp_path, orthanc):
    _archive, config, store = _setup(tmp_path, orthanc)
    source = DicomwebStudySource(dicomweb_source(orthanc))
    study = source.find_studies(*WHOLE_RANGE).studies[0]
    orthanc.stop()
    with StudySink(zone_for(config, store), source.name, study.study_uid) as sink:
        outcome = source.retrieve_study(study, sink)
    assert not outcome.ok and outcome.error.startswith("WADO-RS retrieve study: ConnectionError")
    import pytest

    from axiom_dagster.sources.base import SourceError
    with pytest.raises(SourceError, match="QIDO-RS search on source orthanc-web: ConnectionError"):
        source.find_studies(*WHOLE_RANGE)


def _dataset_bytes(part10: bytes) -> bytes:
    """The encoded data set after the File Meta Information group."""
    ds = dcmread(BytesIO(part10), stop_before_pixels=True)
    start = 132 + 12 + ds.file_meta[0x00020000].value  # preamble+DICM, group length element, group
    return part10[start:]
