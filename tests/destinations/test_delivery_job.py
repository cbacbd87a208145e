"""The delivery job and retry sensor in Dagster: one run for everything due, one op and pool
per destination; a dead destination fails only its own instances (retried, then exceptions)
while the others are confirmed and the catalog is already written."""
from datetime import datetime, timezone

import pytest
from dagster import DagsterInstance, SkipReason, build_sensor_context

from assets.delivery import build_delivery_job
from axiom_dagster.catalog.tables import connect
from axiom_dagster.destinations.delivery import deliver_all
from axiom_dagster.store.deliveries import DeliveryState
from resources import AxiomResource, DestinationsResource
from sensors.delivery import build_delivery_sensor
from tests.destinations.support import FAST_RETRY, delivery_config, input_folder, process, staged
from tests.helpers import write_config_file
from tests.helpers import free_port

pytestmark = pytest.mark.orthanc


def _destinations(orthanc, dead_port, give_up=False):
    dead_retry = {**FAST_RETRY, "max_age_seconds": 0} if give_up else FAST_RETRY
    return [
        {"name": "pacs", "type": "dicom", "host": "127.0.0.1", "port": orthanc.dicom_port, "ae_title": orthanc.aet, "retry": FAST_RETRY},
        {"name": "web", "type": "dicomweb", "url": orthanc.dicomweb_url, "retry": FAST_RETRY},
        {"name": "dead", "type": "dicom", "host": "127.0.0.1", "port": dead_port, "ae_title": "GONE", "retry": dead_retry},
    ]


def test_sensor_requests_one_run_and_job_delivers_per_destination(tmp_path, orthanc):
    config = delivery_config(tmp_path, f"sqlite:///{tmp_path / 'state.db'}", _destinations(orthanc, free_port(), give_up=True))
    config_file = write_config_file(config, tmp_path / "axiom.yaml")
    axiom = AxiomResource(config_path=str(config_file))
    resources = {"axiom": axiom, "destinations": DestinationsResource(axiom=axiom)}
    result = process(axiom.config, axiom.store, input_folder(tmp_path, studies=2, real_world=False))
    assert result.catalog_file  # the catalog does not wait for any destination

    job = build_delivery_job([d.name for d in axiom.config.destinations])
    assert {n.name: n.definition.pool for n in job.nodes} == {
        "deliver_pacs": "axiom_destination_pacs", "deliver_web": "axiom_destination_web", "deliver_dead": "axiom_destination_dead",
    }
    sensor = build_delivery_sensor(job)
    with DagsterInstance.ephemeral() as instance:
        with build_sensor_context(instance=instance, resources=resources) as ctx:
            tick = sensor(ctx)
        assert len(tick.run_requests) == 1 and tick.cursor == "1"
        assert tick.run_requests[0].tags["axiom/due"] == "36"  # 12 instances × 3 destinations, one run
        run = job.execute_in_process(instance=instance, resources=resources, tags=tick.run_requests[0].tags)
        assert run.success

        state = DeliveryState(axiom.store)
        assert {r["status"] for r in state.rows("pacs")} == {"confirmed"}
        assert {r["status"] for r in state.rows("web")} == {"confirmed"}
        assert {(r["status"], r["next_attempt_at"]) for r in state.rows("dead")} == {("failed", None)}
        assert {r["run_id"] for r in state.rows("pacs")} == {run.run_id}
        exceptions = state.list_exceptions(stage="deliver")
        assert len(exceptions) == 12 and {e["destination"] for e in exceptions} == {"dead"}
        study = state.rows("pacs")[0]["study_uid"]
        assert {d: r["state"] for d, r in state.study_rollup(study).items()} == {"pacs": "confirmed", "web": "confirmed", "dead": "failed"}
        assert len(orthanc.instances()) == 12

        with build_sensor_context(instance=instance, resources=resources, cursor=tick.cursor) as ctx:
            assert isinstance(sensor(ctx), SkipReason)  # nothing due: given up rows wait for a person
    assert connect(axiom.config.catalog_path).execute("SELECT count(*) FROM instances").fetchone()[0] == 12


def test_dead_destination_does_not_hold_up_the_others(tmp_path, orthanc):
    """Three destinations in parallel, one refusing connections: its instances are failed
    and due again; the others are confirmed in the same call."""
    config, store = staged(tmp_path, _destinations(orthanc, free_port()), studies=2, real_world=False)
    reports = deliver_all(config, store)
    assert (reports["dead"].confirmed, reports["dead"].failed) == (0, 12)
    assert {n: reports[n].confirmed + reports[n].failed for n in ("pacs", "web")} == {"pacs": 12, "web": 12}
    # Under a loaded machine a live peer has (rarely) dropped one association: whatever
    # failed there is due again, like the dead destination's instances, and goes next time.
    again = deliver_all(config, store, names=["pacs", "web"])
    assert {n: reports[n].confirmed + again[n].confirmed for n in ("pacs", "web")} == {"pacs": 12, "web": 12}
    assert DeliveryState(store).due_counts(datetime.now(timezone.utc), 600) == {"dead": 12}
