"""Poll sensors against a real Orthanc, evaluated as the daemon would: a tick requests exactly
the new studies (bounded per tick), never retrieves; the retrieval runs land them; Orthanc
stopped mid-poll records the failure and the next tick resumes where the last one stopped."""
from datetime import date, datetime, timezone

from dagster import SkipReason, build_sensor_context

from assets.backfill import source_definitions
from axiom_dagster.config.models import AxiomConfig
from resources import AxiomResource, SourceResource
from tests.helpers import make_config, write_config_file
from tests.sources.support import dicomweb_source, ledger_sops, load_archive

LOOKBACK = (date.today() - date(2024, 1, 1)).days + 1  # the synthetic archive's days are in the window


def _environment(tmp_path, orthanc, **poll):
    base = make_config(tmp_path, f"sqlite:///{tmp_path / 'state.db'}")
    spec = dicomweb_source(orthanc, poll={"lookback_days": LOOKBACK, "studies_per_run": 2, **poll})
    config = AxiomConfig(**{**base.model_dump(), "sources": [spec.model_dump()], "base_dir": tmp_path})
    path = str(write_config_file(config, tmp_path / "axiom.yaml"))
    defs = source_definitions(config, path, with_axiom=True)
    resources = {"axiom": AxiomResource(config_path=path), "source_orthanc_web": SourceResource(source_name=spec.name, config_path=path)}
    return config, defs, resources


def _tick(defs, resources, cursor=None):
    sensor = defs.resolve_sensor_def("poll_source_orthanc_web")
    with build_sensor_context(cursor=cursor, resources=resources) as ctx:
        return sensor(ctx)


def _run(defs, resources, requests):
    job = defs.resolve_job_def("retrieve_source_orthanc_web_job")
    for r in requests:
        assert job.execute_in_process(run_config=r.run_config, resources=resources).success


def test_poll_requests_exactly_the_new_studies(tmp_path, orthanc):
    archive = load_archive(orthanc, tmp_path / "a", studies=5, instances=2)
    config, defs, resources = _environment(tmp_path, orthanc)
    first = _tick(defs, resources)
    requested = [u for r in first.run_requests for u in r.run_config["ops"]["retrieve_source_orthanc_web"]["config"]["study_uids"]]
    assert sorted(requested) == sorted(archive) and len(first.run_requests) == 3  # 2 studies per run
    assert ledger_sops(resources["axiom"].store) == []  # the tick retrieves nothing itself
    assert _tick(defs, resources, first.cursor).run_requests == []  # requested, in flight

    _run(defs, resources, first.run_requests)
    assert sorted(ledger_sops(resources["axiom"].store)) == sorted(s for a in archive.values() for s in a["sops"])
    assert _tick(defs, resources, first.cursor).run_requests == []  # complete in the ledger

    newer = load_archive(orthanc, tmp_path / "b", studies=2, instances=2, seed=99)
    third = _tick(defs, resources, first.cursor)
    again = [u for r in third.run_requests for u in r.run_config["ops"]["retrieve_source_orthanc_web"]["config"]["study_uids"]]
    assert sorted(again) == sorted(newer)


def test_orthanc_stopped_mid_poll_is_recorded_and_next_tick_resumes(tmp_path, orthanc):
    archive = load_archive(orthanc, tmp_path / "a", studies=6, instances=1)
    config, defs, resources = _environment(tmp_path, orthanc, page_size=2)
    first = _tick(defs, resources)
    assert len(first.run_requests) == 1 and '"offset": 2' in first.cursor

    orthanc.stop()
    failed = _tick(defs, resources, first.cursor)
    assert isinstance(failed, SkipReason) and "ConnectionError" in failed.skip_message
    poll_errors = resources["axiom"].store.exceptions("poll")
    assert len(poll_errors) == 1 and "QIDO-RS search on source orthanc-web: ConnectionError" in poll_errors[0]["reason"]

    orthanc.start()
    seen = [u for r in first.run_requests for u in r.run_config["ops"]["retrieve_source_orthanc_web"]["config"]["study_uids"]]
    cursor = first.cursor
    while True:
        result = _tick(defs, resources, cursor)
        seen += [u for r in result.run_requests for u in r.run_config["ops"]["retrieve_source_orthanc_web"]["config"]["study_uids"]]
        if result.cursor == cursor or '"offset": 0' in result.cursor:
            break
        cursor = result.cursor
    assert sorted(seen) == sorted(archive)  # every study once, none skipped by the outage
    assert datetime.now(timezone.utc).date().isoformat() in result.cursor  # the high-water mark moved
