"""A run launcher whose run workers Dagster's run monitoring can check, for one host.

Dagster's DefaultRunLauncher starts each run worker as a local process but cannot tell the
monitoring daemon whether that process still lives, so a run worker killed by the OOM killer
or `kill -9` leaves its run STARTED until max_runtime_seconds. This launcher records the
launching host on the run (tag axiom/run_worker_host) and answers the health check from the
run worker's pid (the pid on its RUN_START event): gone or a zombie means FAILED, the daemon
then fails the run and run retries re-queue it. On another host it answers UNKNOWN. (A
recycled pid would read as alive; pids cycle slowly enough for a 30 s poll interval.)
"""
from __future__ import annotations

import socket

from dagster import DagsterEventType
from dagster._core.launcher.base import CheckRunHealthResult, LaunchRunContext, WorkerStatus
from dagster._core.launcher.default_run_launcher import DefaultRunLauncher
from dagster._core.storage.dagster_run import DagsterRun

from axiom_dagster.pipeline.recovery import process_alive

HOST_TAG = "axiom/run_worker_host"


class LocalRunLauncher(DefaultRunLauncher):
    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def launch_run(self, context: LaunchRunContext) -> None:
        self._instance.add_run_tags(context.dagster_run.run_id, {HOST_TAG: socket.gethostname()})
        super().launch_run(context)

    def check_run_worker_health(self, run: DagsterRun) -> CheckRunHealthResult:
        if run.tags.get(HOST_TAG) != socket.gethostname():
            return CheckRunHealthResult(WorkerStatus.UNKNOWN, "run worker not launched on this host")
        starts = self._instance.all_logs(run.run_id, of_type=DagsterEventType.RUN_START)
        if not starts or starts[0].dagster_event is None or starts[0].dagster_event.pid is None:
            return CheckRunHealthResult(WorkerStatus.UNKNOWN, "run worker has not started yet")
        pid = starts[0].dagster_event.pid
        if process_alive(pid):
            return CheckRunHealthResult(WorkerStatus.RUNNING, run_worker_id=str(pid))
        return CheckRunHealthResult(WorkerStatus.FAILED, f"run worker process {pid} is gone", run_worker_id=str(pid))
