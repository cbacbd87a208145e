"""The landing sensor, evaluated with build_sensor_context as the daemon would call it."""
import time
from datetime import datetime, timezone

from dagster import build_sensor_context

from axiom_dagster.ingest.arrival import ArrivalMeta
from axiom_dagster.ingest.landing import LandingZone, read_instance_ids
from resources import AxiomResource
from sensors.landing import landing_sensor

from tests.helpers import make_config, write_config_file
from tests.helpers import land_folder, small_archive


def _tick(resource, cursor=None):
    with build_sensor_context(cursor=cursor, resources={"axiom": resource}) as ctx:
        return landing_sensor(ctx)


def _resource(tmp_path, store_url, **pipeline):
    config = make_config(tmp_path, store_url, **pipeline)
    return config, AxiomResource(config_path=str(write_config_file(config, tmp_path / "axiom.yaml")))


def test_batches_studies_and_second_tick_requests_nothing(tmp_path, store_url):
    config, resource = _resource(tmp_path, store_url, quiet_period_seconds=3600, batch_max_studies=2)
    small_archive(tmp_path / "in", studies=5, series=1, instances=2)
    land_folder(config, resource.store, tmp_path / "in")

    first = _tick(resource)
    # The import's association has ended, so the studies are complete before the quiet period.
    assert len(first.run_requests) == 3  # 5 studies in batches of at most 2, never one run per study
    today = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    assert {r.partition_key for r in first.run_requests} == {today}
    assert first.cursor == "10"
    batch_ids = [r.run_config["ops"]["study_pipeline"]["config"]["batch_id"] for r in first.run_requests]
    assert sum(resource.store.batch(b).studies for b in batch_ids) == 5
    assert len({r.run_key for r in first.run_requests}) == 3

    second = _tick(resource, first.cursor)
    assert second.run_requests == []
    assert second.cursor == first.cursor


def _land_on_open_association(tmp_path, config, store, assoc_id: str) -> None:
    """One instance from a sender that is still connected: its association stays open."""
    src = small_archive(tmp_path / "in", studies=1, series=1, instances=1)[0]
    store.open_association(assoc_id, "ct-scanner", "CT1", "AXIOM", "127.0.0.1")
    zone = LandingZone(config.landing_path, config.quarantine_path, store)
    meta = ArrivalMeta(source="ct-scanner", calling_ae="CT1", association_id=assoc_id)
    zone.land(read_instance_ids(src), lambda fh: fh.write(src.read_bytes()), meta)


def test_incomplete_study_waits_for_quiet_period(tmp_path, store_url):
    config, resource = _resource(tmp_path, store_url, quiet_period_seconds=1.0)
    store = resource.store
    _land_on_open_association(tmp_path, config, store, "assoc-1")

    first = _tick(resource)
    assert first.run_requests == [] and first.cursor == "1"
    assert store.study_counts() == {"receiving": 1}

    time.sleep(1.2)
    later = _tick(resource, first.cursor)
    assert len(later.run_requests) == 1
    assert store.study_counts() == {"queued": 1}


def test_closed_association_completes_study_before_quiet_period(tmp_path, store_url):
    config, resource = _resource(tmp_path, store_url, quiet_period_seconds=3600)
    store = resource.store
    _land_on_open_association(tmp_path, config, store, "assoc-2")
    assert _tick(resource).run_requests == []
    store.close_association("assoc-2", 1)
    assert len(_tick(resource, "1").run_requests) == 1


def test_reset_cursor_rereads_ledger_harmlessly(tmp_path, store_url):
    """A second sensor (or a reset cursor) reading the ledger from 0 requests nothing again."""
    config, resource = _resource(tmp_path, store_url, quiet_period_seconds=3600)
    small_archive(tmp_path / "in", studies=2, series=1, instances=2)
    land_folder(config, resource.store, tmp_path / "in")
    assert len(_tick(resource).run_requests) == 1
    again = _tick(resource, cursor=None)
    assert again.run_requests == []
    assert resource.store.study_counts() == {"queued": 2}
    assert {s["instances_received"] for s in resource.store.receiving_studies(10)} == set()
