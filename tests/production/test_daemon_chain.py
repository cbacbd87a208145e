"""The production chain on one host: landed studies → landing sensor (ticked by the Dagster
daemon) → QueuedRunCoordinator → LocalRunLauncher → run workers → Celery workers."""
from __future__ import annotations

import signal
import subprocess
import time

import pytest
from dagster import DagsterEventType, DagsterInstance, DagsterRunStatus

from axiom_dagster.store.state import StateStore
from resources.run_launcher import HOST_TAG
from tests.helpers import land_folder, make_config, small_archive, write_config_file
from tests.production import celery_support as cs

# All Celery tests share RabbitMQ's `dagster` queue (and purge it): one at a time (conftest.py).
pytestmark = pytest.mark.usefixtures("rabbitmq_queue")


def test_daemon_launches_sensor_batches_onto_celery_workers(tmp_path, postgres_url, monkeypatch):
    if not cs.rabbitmq_available():
        pytest.skip("RabbitMQ on 127.0.0.1:5672 is not reachable")
    small_archive(tmp_path / "in", studies=2, series=1, instances=20)
    config = make_config(tmp_path, f"sqlite:///{tmp_path / 'state.db'}", workers=1, batch_max_studies=1)
    config_file = write_config_file(config, tmp_path / "axiom.yaml")
    store = StateStore(config.state_store_url)
    store.migrate()
    land_folder(config, store, tmp_path / "in")
    deployment = cs.make_deployment(tmp_path, config_file, postgres_url.rsplit("/", 1)[1])
    for key, value in deployment.env().items():
        if key.startswith("DAGSTER_"):
            monkeypatch.setenv(key, value)

    cs.purge_queue()
    workers, daemon = [], None
    try:
        workers = [cs.CeleryWorker(deployment, f"chain{i}") for i in (1, 2)]
        daemon = subprocess.Popen([str(cs.BIN / "dagster-daemon"), "run", "-w", str(cs.ROOT / "workspace.yaml")],
                                  cwd=cs.ROOT, env=deployment.env(), stdout=subprocess.DEVNULL,
                                  stderr=(tmp_path / "daemon.log").open("wb"))
        with DagsterInstance.get() as instance:
            deadline = time.monotonic() + 400
            while True:
                runs = [r.dagster_run for r in instance.get_run_records()]
                if len(runs) == 2 and all(r.status == DagsterRunStatus.SUCCESS for r in runs):
                    break
                assert not any(r.status == DagsterRunStatus.FAILURE for r in runs), "a run failed"
                assert time.monotonic() < deadline, f"runs: {[(r.run_id, r.status) for r in runs]}"
                assert daemon.poll() is None, (tmp_path / "daemon.log").read_text()[-3000:]
                time.sleep(1)
            for run in runs:
                assert run.tags["dagster/sensor_name"] == "landing_sensor"
                assert run.tags[HOST_TAG]  # launched by the instance's LocalRunLauncher
                engine = instance.all_logs(run.run_id, of_type=DagsterEventType.ENGINE_EVENT)
                assert any("Celery worker" in e.dagster_event.engine_event_data.metadata for e in engine)
    finally:
        if daemon is not None:
            daemon.send_signal(signal.SIGTERM)
            try:
                daemon.wait(60)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait()
        for w in workers:
            w.stop()
    assert len(list(config.destination_path(config.destinations[0]).rglob("*.dcm"))) == 40
    assert store.study_counts() == {"done": 2}
    store.dispose()
