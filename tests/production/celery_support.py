"""Celery workers, run launches and results for the Celery test and bench/celery.py.

Everything runs on 127.0.0.1: RabbitMQ (guest/guest on the default vhost, queue `dagster`),
a Dagster instance in PostgreSQL, the state store in SQLite; workers are `celery worker`
processes started here with the documented settings (deploy/celery: one pool thread, one
batch at a time; the batch's own process pool may fork) and stopped here by their pids.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml
from kombu import Connection

ROOT = Path(__file__).resolve().parents[2]
BROKER = os.environ.get("AXIOM_CELERY_BROKER", "amqp://guest:guest@127.0.0.1:5672//")
QUEUE = "dagster"
BIN = Path(sys.executable).parent


def rabbitmq_available() -> bool:
    try:
        with Connection(BROKER, connect_timeout=3) as conn:
            conn.ensure_connection(max_retries=1)
        return True
    except Exception:
        return False


def queue_depth() -> int:
    with Connection(BROKER) as conn, conn.channel() as channel:
        try:
            return channel.queue_declare(QUEUE, passive=True).message_count
        except Exception:
            return 0


def purge_queue() -> None:
    """Drop messages an interrupted earlier run left behind."""
    with Connection(BROKER) as conn:
        try:
            conn.SimpleQueue(QUEUE, queue_opts={"queue_arguments": {"x-max-priority": 10}}).clear()
        except Exception:
            pass


@dataclass
class Deployment:
    """Environment shared by the run workers and the Celery workers."""

    dagster_home: Path
    config_file: Path
    pg_db: str

    def env(self, **extra) -> dict:
        return {
            **os.environ, "DAGSTER_HOME": str(self.dagster_home), "AXIOM_CONFIG": str(self.config_file),
            "AXIOM_EXECUTOR": "celery", "AXIOM_CELERY_BROKER": BROKER,
            "DAGSTER_PG_HOST": "127.0.0.1", "DAGSTER_PG_PORT": "5432", "DAGSTER_PG_DB": self.pg_db,
            "DAGSTER_PG_USER": "postgres", "DAGSTER_PG_PASSWORD": "unused-with-trust-auth",
            "PYTHONPATH": os.pathsep.join([str(ROOT / "deploy" / "celery"), str(ROOT)]),
            **extra,
        }


def make_deployment(root: Path, config_file: Path, pg_db: str) -> Deployment:
    home = root / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "config" / "dagster-postgres.yaml", home / "dagster.yaml")
    return Deployment(home, config_file, pg_db)


class CeleryWorker:
    def __init__(self, deployment: Deployment, name: str, cpu: int | None = None):
        cmd = [str(BIN / "celery"), "-A", "dagster_celery.app", "worker", "-Q", QUEUE, "-n", f"{name}@%h", "--without-gossip", "--without-mingle", "--without-heartbeat",
               "--loglevel", "WARNING"]
        if cpu is not None:
            cmd = ["taskset", "-c", str(cpu)] + cmd
        self.name = name
        self.log = deployment.dagster_home / f"{name}.log"
        self.process = subprocess.Popen(cmd, env=deployment.env(), cwd=ROOT, stdout=self.log.open("wb"),
                                        stderr=subprocess.STDOUT)

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the worker and its child processes (a batch's process pool;
        live ones from their own /proc entries, reaped ones from the parent's) have used so far."""
        return sum(_cpu_seconds(pid) for pid in [self.process.pid, *_children(self.process.pid)])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")  # utime stime cutime cstime


def _children(pid: int) -> list[int]:
    """Descendants of `pid`, from /proc/<pid>/task/*/children."""
    found, todo = [], [pid]
    while todo:
        for task in Path(f"/proc/{todo.pop()}/task").glob("*/children"):
            try:
                kids = [int(k) for k in task.read_text().split()]
            except FileNotFoundError:
                continue
            found += kids
            todo += kids
    return found


def stop_all(runs: list[subprocess.Popen], workers: list[CeleryWorker]) -> None:
    """Kill run workers still running, then stop the Celery workers."""
    for p in runs:
        if p.poll() is None:
            p.kill()
            p.wait()
    for w in workers:
        w.stop()


def launch_run(deployment: Deployment, batch_id: int, partition: str, cpu: int | None = None) -> subprocess.Popen:
    """A run worker for one batch (`dagster job execute`), as the daemon would launch it."""
    config = deployment.dagster_home / f"batch-{batch_id}.yaml"
    config.write_text(yaml.safe_dump({"ops": {"study_pipeline": {"config": {"batch_id": batch_id}}}}))
    cmd = [str(BIN / "dagster"), "job", "execute", "-m", "axiom_dagster.definitions", "-j", "study_pipeline_job",
           "-c", str(config), "--tags", json.dumps({"dagster/partition": partition, "axiom/batch": str(batch_id)})]
    if cpu is not None:
        cmd = ["taskset", "-c", str(cpu)] + cmd
    log = deployment.dagster_home / f"run-{batch_id}.log"
    return subprocess.Popen(cmd, env=deployment.env(), cwd=ROOT, stdout=log.open("wb"), stderr=subprocess.STDOUT)


def wait_for_queue(depth: int, runs: list[subprocess.Popen], timeout: float = 180) -> None:
    """Until `depth` step tasks wait in the queue (every run worker has submitted its step)."""
    deadline = time.monotonic() + timeout
    while queue_depth() < depth:
        failed = [p for p in runs if p.poll() not in (None, 0)]
        if failed or time.monotonic() > deadline:
            raise RuntimeError(f"step tasks did not reach the queue ({queue_depth()} of {depth})")
        time.sleep(0.2)


@dataclass
class StepExecution:
    run_id: str
    batch_id: int
    celery_worker: str
    pid: int
    started: float
    finished: float
    phases: dict | None = None


def step_executions(instance, run_ids: list[str]) -> list[StepExecution]:
    """Where and when each run's step ran, from the run's event log."""
    from dagster import DagsterEventType

    out = []
    for run_id in run_ids:
        run = instance.get_run_by_id(run_id)
        events = instance.all_logs(run_id)
        worker = next(e.dagster_event.engine_event_data.metadata["Celery worker"].value for e in events
                      if e.dagster_event and e.dagster_event.event_type == DagsterEventType.ENGINE_EVENT
                      and "Celery worker" in e.dagster_event.engine_event_data.metadata)
        start = next(e for e in events if e.dagster_event and e.dagster_event.event_type == DagsterEventType.STEP_START)
        end = next(e for e in events if e.dagster_event and e.dagster_event.event_type == DagsterEventType.STEP_SUCCESS)
        phases = {}  # the batch's seconds per phase (process, sync, record), from its materializations
        for e in events:
            if e.dagster_event and e.dagster_event.event_type == DagsterEventType.ASSET_MATERIALIZATION:
                metadata = e.dagster_event.step_materialization_data.materialization.metadata
                phases.update({k[len("seconds_"):]: v.value for k, v in metadata.items() if k.startswith("seconds_")})
        out.append(StepExecution(run_id, int(run.tags["axiom/batch"]), worker, start.dagster_event.pid,
                                 start.timestamp, end.timestamp, phases))
    return out


@dataclass
class CeleryTask:
    """One step's Celery task: which worker took it, when it began there and when the step
    finished, from the run's event log."""

    run_id: str
    step_key: str
    celery_worker: str
    started: float
    finished: float


def celery_tasks(instance, run_ids: list[str]) -> list[CeleryTask]:
    from dagster import DagsterEventType

    out = []
    for run_id in run_ids:
        started, worker, finished = {}, {}, {}
        for e in instance.all_logs(run_id):
            event = e.dagster_event
            if event is None or event.step_key is None:
                continue
            if event.event_type == DagsterEventType.ENGINE_EVENT:
                metadata = event.engine_event_data.metadata
                if "Celery worker" in metadata:  # written by the worker as the task begins
                    started.setdefault(event.step_key, e.timestamp)
                    worker.setdefault(event.step_key, metadata["Celery worker"].value)
            elif event.event_type == DagsterEventType.STEP_SUCCESS:
                finished[event.step_key] = e.timestamp
        out += [CeleryTask(run_id, key, worker[key], started[key], finished[key]) for key in finished]
    return out


def tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*.dcm"))}
