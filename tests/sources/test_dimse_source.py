"""DIMSE source against a real Orthanc: C-ECHO, study-level C-FIND with filters, C-FIND +
C-GET and C-FIND + C-MOVE each retrieve a study; failures carry the DIMSE status."""
import os
from datetime import date
from io import BytesIO

from pydicom import dcmread

import pytest

from axiom_dagster.config.sources import MoveDestination
from axiom_dagster.sources.base import SourceError, StudyRef
from axiom_dagster.sources.dimse import DimseStudySource
from axiom_dagster.sources.sink import StudySink
from axiom_dagster.store.state import StateStore
from tests.helpers import make_config
from tests.helpers import free_port
from tests.sources.support import dimse_source, ledger_sops, load_archive, zone_for

RANGE = (date(2024, 1, 1), date(2024, 12, 31))


@pytest.fixture
def setup(tmp_path, orthanc):
    move_port = free_port()
    orthanc.modalities = {"AXIOM": move_port, "AXIOM_MOVE": move_port}
    orthanc.restart()
    archive = load_archive(orthanc, tmp_path / "archive", studies=4, series=2, instances=2)
    config = make_config(tmp_path, f"sqlite:///{tmp_path / 'state.db'}")
    store = StateStore(config.state_store_url)
    store.migrate()
    return archive, config, store, move_port


def test_echo_and_find_with_filters(setup, orthanc):
    archive, *_ = setup
    source = DimseStudySource(dimse_source(orthanc))
    assert source.echo() == "C-ECHO ok"
    found = source.find_studies(*RANGE)
    assert {s.study_uid for s in found.studies} == set(archive)
    assert {s.instances for s in found.studies} == {4}
    assert all(s.sop_classes for s in found.studies)
    some_date = sorted(a["date"] for a in archive.values())[0]
    day = date(int(some_date[:4]), int(some_date[4:6]), int(some_date[6:]))
    assert {s.study_uid for s in source.find_studies(day, day).studies} == {u for u, a in archive.items() if a["date"] == some_date}
    first_two = source.find_studies(*RANGE, limit=2)
    assert len(first_two.studies) == 2 and first_two.more


@pytest.mark.parametrize("mode", ["get", "move"])
def test_find_then_retrieve_lands_the_study(setup, orthanc, mode):
    archive, config, store, move_port = setup
    extra = {"retrieve": mode}
    if mode == "move":
        extra["move_destination"] = MoveDestination(ae_title="AXIOM_MOVE", port=move_port)
    source = DimseStudySource(dimse_source(orthanc, **extra))
    try:
        study = source.find_studies(*RANGE).studies[0]
        with StudySink(zone_for(config, store), source.name, study.study_uid) as sink:
            outcome = source.retrieve_study(study, sink)
        assert outcome.ok, outcome.error
        assert outcome.fetched == 4 and outcome.statuses == {"0x0000": 1}
        assert set(ledger_sops(store)) == archive[study.study_uid]["sops"]
        with store.engine.connect() as conn:
            paths = list(conn.exec_driver_sql("SELECT path FROM ledger").scalars())
        for p in paths:  # the instances Orthanc holds, pixel data included
            ours = dcmread(p)
            theirs = dcmread(BytesIO(orthanc.file_by_sop_uid(ours.SOPInstanceUID)))
            assert ours == theirs and ours.PixelData == theirs.PixelData
    finally:
        source.close()


def test_unknown_study_and_stopped_peer_record_the_dimse_failure(setup, orthanc, tmp_path):
    _archive, config, store, _ = setup
    source = DimseStudySource(dimse_source(orthanc))
    missing = StudyRef("1.2.3.4.5.6.7.8.9")
    with StudySink(zone_for(config, store), source.name, missing.study_uid) as sink:
        outcome = source.retrieve_study(missing, sink)
    assert outcome.fetched == 0
    orthanc.stop()
    with pytest.raises(SourceError, match="association with ORTHANC .* (aborted|failed)"):
        source.find_studies(*RANGE)
    with StudySink(zone_for(config, store), source.name, missing.study_uid) as sink:
        outcome = source.retrieve_study(missing, sink)
    assert not outcome.ok and "association" in outcome.error


def test_concurrent_moves_share_one_listener_and_route_by_study(setup, orthanc):
    from axiom_dagster.sources import progress
    from axiom_dagster.sources.retrieve import retrieve_studies

    archive, config, store, move_port = setup
    source = DimseStudySource(dimse_source(orthanc, retrieve="move", move_destination=MoveDestination(ae_title="AXIOM_MOVE", port=move_port)))
    try:
        studies = source.find_studies(*RANGE).studies
        totals = retrieve_studies(source, zone_for(config, store), studies, concurrency=2, run_id="test-run")
    finally:
        source.close()
    assert totals.fetched_studies == 4 and totals.failed_studies == 0 and totals.instances == 16
    assert sorted(ledger_sops(store)) == sorted(s for a in archive.values() for s in a["sops"])
    with store.engine.connect() as conn:
        per_assoc = conn.exec_driver_sql("SELECT association_id, count(DISTINCT study_uid) FROM ledger GROUP BY association_id").all()
    assert len(per_assoc) == 4 and all(n == 1 for _, n in per_assoc)  # one association per study
    assert {r["status"]: r["studies"] for r in progress.summary(store, "orthanc-dimse")} == {"done": 4}


def test_cget_backfill_in_worker_processes_lands_every_study_once(setup, orthanc, tmp_path):
    """concurrency > 1 with C-GET: each study retrieved in a worker process of its own."""
    from collections import Counter

    from axiom_dagster.config.models import AxiomConfig
    from axiom_dagster.sources import progress
    from axiom_dagster.sources.backfill import backfill_days, days_between
    from axiom_dagster.sources.workers import ProcessRetrieval, wants_processes

    archive, config, store, _ = setup
    spec = dimse_source(orthanc, backfill={"concurrency": 2})
    config = AxiomConfig(**{**config.model_dump(), "sources": [spec.model_dump()], "base_dir": tmp_path})
    assert wants_processes(spec)
    processes = ProcessRetrieval(config, spec.name, 2)
    source = DimseStudySource(spec)
    try:
        results = list(backfill_days(source, zone_for(config, store), days_between(date(2024, 1, 1), date(2024, 1, 31)),
                                     spec.backfill, run_id="processes", processes=processes))
        pids = {p.pid for p in processes._pool._processes.values()}
    finally:
        processes.close()
        source.close()
    assert sum(r.fetched for r in results) == 4 and not any(r.failed for r in results)
    assert pids and os.getpid() not in pids
    sops = ledger_sops(store)
    assert Counter(sops).most_common(1)[0][1] == 1 and set(sops) == {s for a in archive.values() for s in a["sops"]}
    assert {r["status"]: r["studies"] for r in progress.summary(store, spec.name)} == {"done": 4}
