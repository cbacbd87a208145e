"""A batch whose run process is killed (kill -9) is noticed by the landing sensor alone and
requested again under a new run key; after max_batch_attempts it stays failed, visible in
`axiom status` and the study API report."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from dagster import DagsterInstance, DagsterRunStatus, build_sensor_context

from axiom_dagster.catalog.tables import connect
from axiom_dagster.cli import main as axiom
from axiom_dagster.definitions import defs
from resources import AxiomResource
from sensors.landing import landing_sensor
from tests.helpers import land_folder, make_config, small_archive, write_config_file

ROOT = Path(__file__).resolve().parents[2]
RUN_PROCESS = """
import sys
from dagster import DagsterInstance
from axiom_dagster.definitions import defs
batch_id, partition, run_key = int(sys.argv[1]), sys.argv[2], sys.argv[3]
defs.resolve_job_def("study_pipeline_job").execute_in_process(
    run_config={"ops": {"study_pipeline": {"config": {"batch_id": batch_id}}}},
    instance=DagsterInstance.get(), partition_key=partition,
    tags={"axiom/batch_id": str(batch_id), "axiom/attempt": "1", "dagster/run_key": run_key},
)
"""


def _setup(tmp_path, monkeypatch, **pipeline):
    config = make_config(tmp_path, f"sqlite:///{tmp_path / 'state.db'}", workers=1, retry_delay_seconds=0, **pipeline)
    config_file = write_config_file(config, tmp_path / "axiom.yaml")
    monkeypatch.setenv("AXIOM_CONFIG", str(config_file))
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return config, AxiomResource(config_path=str(config_file)), DagsterInstance.get()


def _tick(resource, instance, cursor=None):
    with build_sensor_context(instance=instance, cursor=cursor, resources={"axiom": resource}) as ctx:
        return landing_sensor(ctx)


def _one_batch_requested(tmp_path, config, resource, instance):
    """One study of two instances landed and requested by a sensor tick: (request, batch id)."""
    small_archive(tmp_path / "in", studies=1, series=1, instances=2)
    land_folder(config, resource.store, tmp_path / "in")
    (request,) = _tick(resource, instance).run_requests
    return request, request.run_config["ops"]["study_pipeline"]["config"]["batch_id"]


def test_kill_9_of_a_run_is_recovered_by_the_sensor(tmp_path, monkeypatch):
    config, resource, instance = _setup(tmp_path, monkeypatch, max_batch_attempts=2)
    store = resource.store
    small_archive(tmp_path / "in", studies=1, series=1, instances=3)
    land_folder(config, store, tmp_path / "in")
    # One landed file becomes a named pipe: the run blocks reading it, deterministically.
    blocker = Path(store.ledger_after(0, 10)[-1].path)
    original = blocker.read_bytes()
    blocker.unlink()
    os.mkfifo(blocker)

    first = _tick(resource, instance)
    (request,) = first.run_requests
    batch_id = request.run_config["ops"]["study_pipeline"]["config"]["batch_id"]
    proc = subprocess.Popen([sys.executable, "-c", RUN_PROCESS, str(batch_id), request.partition_key, request.run_key],
                            cwd=ROOT, env=dict(os.environ), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while store.batch(batch_id).status != "running" and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
        assert store.batch(batch_id).status == "running"
    finally:
        proc.kill()  # SIGKILL: no handler runs, the batch stays "running"
        proc.wait()
    blocker.unlink()
    blocker.write_bytes(original)

    second = _tick(resource, instance, first.cursor)
    (retry,) = second.run_requests
    assert retry.run_key == f"batch-{batch_id}-attempt-2" and retry.tags["axiom/attempt"] == "2"
    killed = instance.get_runs()[-1]
    assert killed.status == DagsterRunStatus.FAILURE

    job = defs.resolve_job_def("study_pipeline_job")
    result = job.execute_in_process(run_config=retry.run_config, instance=instance,
                                    partition_key=retry.partition_key, tags=retry.tags)
    assert result.success
    batch = store.batch(batch_id)
    assert batch.status == "done" and batch.attempts == 2
    assert connect(config.catalog_path).execute("SELECT count(*) FROM instances").fetchone()[0] == 3
    assert _tick(resource, instance, second.cursor).run_requests == []


def test_after_the_last_attempt_the_batch_stays_failed_and_shows(tmp_path, monkeypatch, capsys):
    config, resource, instance = _setup(tmp_path, monkeypatch, max_batch_attempts=1)
    store = resource.store
    request, batch_id = _one_batch_requested(tmp_path, config, resource, instance)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a run process that no longer exists
    store.start_batch(batch_id, "run-gone")
    with store.engine.begin() as conn:
        conn.exec_driver_sql(f"UPDATE batches SET run_pid = {gone.pid} WHERE id = {batch_id}")

    assert _tick(resource, instance, "2").run_requests == []
    batch = store.batch(batch_id)
    assert batch.status == "failed" and batch.attempts == 1
    study_uid = store.ledger_after(0, 1)[0].study_uid
    report = store.study_report(study_uid)
    assert report["study"]["status"] == "failed" and report["batch"]["status"] == "failed"
    assert "died" in report["batch"]["last_failure"]
    assert axiom(["status"]) == 0
    assert "failed: 1" in capsys.readouterr().out


def test_canceled_dagster_run_is_requested_again(tmp_path, monkeypatch):
    config, resource, instance = _setup(tmp_path, monkeypatch, max_batch_attempts=3)
    store = resource.store
    request, batch_id = _one_batch_requested(tmp_path, config, resource, instance)
    job = defs.resolve_job_def("study_pipeline_job")
    run = instance.create_run_for_job(job_def=job, run_config=request.run_config, tags=request.tags)
    store.start_batch(batch_id, run.run_id)  # this (live) process: only Dagster knows it ended
    instance.report_run_canceled(run)

    (retry,) = _tick(resource, instance, "2").run_requests
    assert retry.run_key == f"batch-{batch_id}-attempt-2"
    assert store.batch(batch_id).attempts == 2 and store.batch(batch_id).status == "requested"
