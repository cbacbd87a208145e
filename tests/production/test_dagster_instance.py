"""config/dagster-postgres.yaml against the local PostgreSQL: queue, concurrency limits and
pools, run monitoring, run retries, tick retention, and the event-log retention job."""
import shutil
from pathlib import Path

from dagster import DagsterInstance, DagsterRunStatus, RunsFilter, asset, materialize

from assets.retention import dagster_retention_job

ROOT = Path(__file__).resolve().parents[2]


def _instance(tmp_path, postgres_url, monkeypatch) -> DagsterInstance:
    shutil.copy(ROOT / "config" / "dagster-postgres.yaml", tmp_path / "dagster.yaml")
    for key, value in {
        "DAGSTER_PG_HOST": "127.0.0.1", "DAGSTER_PG_PORT": "5432", "DAGSTER_PG_DB": postgres_url.rsplit("/", 1)[1],
        "DAGSTER_PG_USER": "postgres", "DAGSTER_PG_PASSWORD": "unused-with-trust-auth",
    }.items():
        monkeypatch.setenv(key, value)
    return DagsterInstance.from_config(str(tmp_path))


def test_production_instance_settings(tmp_path, postgres_url, monkeypatch):
    with _instance(tmp_path, postgres_url, monkeypatch) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        runs = instance.get_concurrency_config().run_queue_config
        assert runs.max_concurrent_runs == 8
        limits = {(t["key"], str(t.get("value"))): t["limit"] for t in runs.tag_concurrency_limits}
        assert limits[("axiom/node", "{'applyLimitPerUniqueValue': True}")] == 2
        assert limits[("dagster/sensor_name", "landing_sensor")] == 6
        pools = instance.get_concurrency_config().pool_config
        assert pools.default_pool_limit == 2 and str(pools.pool_granularity.value) == "op"
        # A pool per remote node, with its own limit set as an operator would (CLI/UI).
        instance.event_log_storage.set_concurrency_slots("axiom_source_pacs_main", 4)
        assert instance.event_log_storage.get_concurrency_info("axiom_source_pacs_main").slot_count == 4
        assert instance.run_monitoring_enabled and instance.run_monitoring_start_timeout_seconds == 180
        assert instance.run_monitoring_max_runtime_seconds == 7200
        assert instance.run_retries_enabled and instance.run_retries_max_retries == 2
        from dagster._core.definitions.run_request import InstigatorType
        from dagster._core.scheduler.instigation import TickStatus

        assert instance.get_tick_retention_settings(InstigatorType.SENSOR)[TickStatus.SKIPPED] == 1
        assert instance.get_tick_retention_settings(InstigatorType.SCHEDULE)[TickStatus.SUCCESS] == 30


def test_retention_job_deletes_old_runs_and_their_events(tmp_path, postgres_url, monkeypatch):
    @asset
    def probe():
        return 1

    with _instance(tmp_path, postgres_url, monkeypatch) as instance:
        old = [materialize([probe], instance=instance).run_id for _ in range(2)]
        assert all(instance.all_logs(run_id) for run_id in old)
        result = dagster_retention_job.execute_in_process(
            instance=instance, run_config={"ops": {"delete_old_runs": {"config": {"retention_days": 0}}}},
        )
        assert result.success and result.output_for_node("delete_old_runs") == 2
        assert all(instance.get_run_by_id(run_id) is None for run_id in old)
        assert not any(instance.all_logs(run_id) for run_id in old)
        # The retention run itself is kept.
        left = instance.get_run_records(filters=RunsFilter(statuses=[DagsterRunStatus.SUCCESS]))
        assert [r.dagster_run.run_id for r in left] == [result.run_id]


def test_run_monitoring_fails_a_run_whose_worker_was_killed_and_retries_it(tmp_path, postgres_url, monkeypatch):
    """The production instance's LocalRunLauncher reports a killed run worker; the monitoring
    daemon's check then fails the run, and run retries select it for re-execution."""
    import logging
    import os
    import signal
    import socket
    import subprocess
    import sys
    import time

    from dagster._core.launcher.base import WorkerStatus
    from dagster._daemon.auto_run_reexecution.auto_run_reexecution import filter_runs_to_should_retry
    from dagster._daemon.monitoring.run_monitoring import monitor_started_run

    from resources.run_launcher import HOST_TAG

    with _instance(tmp_path, postgres_url, monkeypatch) as instance:
        assert type(instance.run_launcher).__name__ == "LocalRunLauncher"
        worker = subprocess.Popen(
            [str(Path(sys.executable).with_name("dagster")), "job", "execute", "-f",
             str(Path(__file__).with_name("slow_job.py")), "-j", "slow_job"],
            env={**os.environ, "DAGSTER_HOME": str(tmp_path)}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 120
            while not (instance.get_run_records() and instance.get_run_records()[0].dagster_run.status == DagsterRunStatus.STARTED):
                assert time.monotonic() < deadline and worker.poll() is None, "the run did not start"
                time.sleep(0.2)
            run_id = instance.get_run_records()[0].dagster_run.run_id
            instance.add_run_tags(run_id, {HOST_TAG: socket.gethostname()})  # as launch_run does
            assert instance.run_launcher.check_run_worker_health(instance.get_run_by_id(run_id)).status == WorkerStatus.RUNNING
            worker.send_signal(signal.SIGKILL)
            worker.wait()
        finally:
            if worker.poll() is None:
                worker.kill()
        run = instance.get_run_by_id(run_id)
        assert instance.run_launcher.check_run_worker_health(run).status == WorkerStatus.FAILED

        monitor_started_run(instance, None, instance.get_run_records(RunsFilter(run_ids=[run_id]))[0], logging.getLogger("test"))
        failed = instance.get_run_by_id(run_id)
        assert failed.status == DagsterRunStatus.FAILURE
        assert [r.run_id for r in filter_runs_to_should_retry([failed], instance)] == [run_id]


def test_storage_keeps_its_connections_and_forked_children_leave_them(tmp_path, postgres_url, monkeypatch):
    """resources/pg_storage.py: events written by a step reuse the storage's connections
    (dagster-postgres alone opens one per write), and a forked child (the pipeline's worker
    pool) neither closes nor shares the parent's."""
    import os

    from sqlalchemy import event

    @asset
    def probe():
        return 1

    with _instance(tmp_path, postgres_url, monkeypatch) as instance:
        connects = []
        for storage in (instance.run_storage, instance.event_log_storage):
            assert type(storage._engine.pool).__name__ == "QueuePool"
            event.listen(storage._engine, "connect", lambda *_: connects.append(1))
        runs = [materialize([probe], instance=instance).run_id for _ in range(3)]
        events = sum(len(instance.all_logs(run_id)) for run_id in runs)
        assert events >= 30 and len(connects) <= 4, (events, len(connects))

        pid = os.fork()
        if pid == 0:  # the child uses the storage on its own connection, then exits normally
            code = 0 if instance.get_run_by_id(runs[0]) is not None else 1
            instance.event_log_storage._engine.dispose()  # closing what the child holds: only its own
            os._exit(code)
        assert os.waitpid(pid, 0)[1] == 0
        before = len(connects)
        assert materialize([probe], instance=instance).success  # the parent's pooled connections still work
        assert len(connects) == before
