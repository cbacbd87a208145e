"""Celery scale-out: two Celery workers against one, each limited to one core, on the
pipeline benchmark's files (bench/pipeline.py: 2,000 x 132 KB, 50 studies), same run.

    python bench/celery.py [--instances 2000] [--batches 4] [--morph set|none] [--state pg|sqlite]

Both sides land the same files, split the studies into the same batches, and start one run
worker per batch (`dagster job execute` with AXIOM_EXECUTOR=celery: the run worker submits
the batch's step to RabbitMQ and waits). Once every step waits in the queue, the Celery
workers start (`taskset -c 0`, and `-c 1` for the second; pipeline.workers = 1, so a batch
uses exactly its worker's core). Throughput = instances / (last step end - first step start),
from the runs' event logs; the wall time from worker start to the last run's end is shown too.
The state store is a PostgreSQL database by default, as in the documented scale-out deployment
(with --state sqlite the workers share one SQLite file and its single writer lock).
Needs RabbitMQ (guest/guest) and PostgreSQL (postgres, trust) on 127.0.0.1.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import sqlalchemy as sa
import yaml

ROOT = Path(__file__).resolve().parents[1]
# Run as a script, this file's folder comes first on sys.path, and this file would shadow the
# `celery` package for everything imported after it.
sys.path = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

from axiom_dagster.ingest.arrival import ArrivalMeta  # noqa: E402
from axiom_dagster.ingest.landing import LandingZone  # noqa: E402
from axiom_dagster.store.state import StateStore  # noqa: E402
from axiom_dagster.synth import SynthSpec, generate_archive  # noqa: E402
from bench.pipeline import bench_config  # noqa: E402
from tests.production import celery_support as cs  # noqa: E402

PG_ADMIN = os.environ.get("AXIOM_TEST_PG_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")


def prepare(work: Path, archive: list[Path], batches: int, morph: str, state_url: str | None):
    work.mkdir(parents=True)
    config = bench_config(work, morph, workers=1)
    if state_url:
        config = config.model_copy(update={"state_store": config.state_store.model_copy(update={"url": state_url})})
    config_file = work / "axiom.yaml"
    config_file.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    store = StateStore(config.state_store_url)
    store.migrate()
    LandingZone.for_config(config, store).import_files(archive, ArrivalMeta(source="bench"))
    rows = store.ledger_after(0, 1_000_000)
    store.note_arrivals(rows)
    studies = sorted({r.study_uid for r in rows})
    made = [store.create_batch(rows[0].arrival_date, studies[i::batches]) for i in range(batches)]
    store.dispose()
    return config, config_file, made


class CpuSamples:
    """Each worker's CPU seconds, sampled every 0.1 s in a thread, so that the CPU used
    between two moments (the step span) can be read afterwards (startup excluded)."""

    def __init__(self, workers: list):
        self.workers, self.rows, self.done = workers, [], threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.done.wait(0.1):
            try:
                self.rows.append((time.time(), [w.cpu_seconds() for w in self.workers]))
            except (FileNotFoundError, ProcessLookupError):
                return

    def stop(self) -> None:
        self.done.set()
        self.thread.join()

    def used_between(self, start: float, end: float) -> list[float]:
        def at(t):
            return min(self.rows, key=lambda row: abs(row[0] - t))[1]

        return [b - a for a, b in zip(at(start), at(end))]


def scenario(work: Path, archive: list[Path], args, workers: int) -> dict:
    db = f"axiom_bench_{uuid.uuid4().hex[:10]}"
    databases = [db] + ([f"{db}_state"] if args.state == "pg" else [])
    admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        for name in databases:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    state_url = sa.make_url(PG_ADMIN).set(database=f"{db}_state").render_as_string(hide_password=False) if args.state == "pg" else None
    config, config_file, batches = prepare(work, archive, args.batches, args.morph, state_url)
    deployment = cs.make_deployment(work, config_file, db)
    started_workers, runs = [], []
    try:
        cs.purge_queue()
        runs = [cs.launch_run(deployment, b.id, b.partition) for b in batches]
        cs.wait_for_queue(len(batches), runs, timeout=600)
        t0 = time.time()
        started_workers = [cs.CeleryWorker(deployment, f"bench{i}", cpu=i) for i in range(workers)]
        samples = CpuSamples(started_workers)
        for p in runs:
            if p.wait(1800) != 0:
                raise RuntimeError(f"a run failed; logs in {deployment.dagster_home}")
        wall = time.time() - t0
        samples.stop()
        os.environ.update({k: v for k, v in deployment.env().items() if k.startswith("DAGSTER_")})
        from dagster import DagsterInstance

        with DagsterInstance.get() as instance:
            steps = cs.step_executions(instance, [r.dagster_run.run_id for r in instance.get_run_records()])
    finally:
        cs.stop_all(runs, started_workers)
        with admin.connect() as conn:
            for name in databases:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()
    routed = sum(1 for _ in config.destination_path(config.destinations[0]).rglob("*.dcm"))
    assert routed == len(archive), routed
    first, last = min(s.started for s in steps), max(s.finished for s in steps)
    span = last - first
    # Share of a core each worker got while the steps ran (1.0 = a whole core to itself).
    share = [round(c / span, 2) for c in samples.used_between(first, last)]
    return {"workers": workers, "hosts": sorted({s.celery_worker for s in steps}), "span": span, "wall": wall,
            "rate": len(archive) / span, "steps": [round(s.finished - s.started, 2) for s in steps], "share": share,
            "phases": {k: round(sum((s.phases or {}).get(k, 0) for s in steps), 2) for k in ("process", "sync", "record")},
            # Per step: worker, start after the first step's start, seconds, and its phases.
            "timeline": [(s.celery_worker.split("@")[0], round(s.started - first, 2), round(s.finished - s.started, 2),
                          {k: round(v, 2) for k, v in (s.phases or {}).items()}) for s in sorted(steps, key=lambda s: s.started)]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--instances", type=int, default=2000)
    parser.add_argument("--rows", type=int, default=256)
    parser.add_argument("--batches", type=int, default=4)
    parser.add_argument("--morph", choices=["set", "none"], default="set")
    parser.add_argument("--state", choices=["pg", "sqlite"], default="pg", help="state store (default: PostgreSQL)")
    args = parser.parse_args()
    if not cs.rabbitmq_available():
        sys.exit("RabbitMQ on 127.0.0.1:5672 is not reachable")
    per_series = 20
    spec = SynthSpec(max(1, args.instances // (per_series * 2)), 2, per_series, args.rows, args.rows, seed=11)
    with tempfile.TemporaryDirectory(prefix="axiom-bench-celery-") as tmp:
        tmp = Path(tmp)
        archive = generate_archive(tmp / "archive", spec)
        mb = sum(p.stat().st_size for p in archive) / 1e6
        print(f"{len(archive)} instances, {mb:.0f} MB, {args.batches} batches, morph={args.morph}, state={args.state}, {os.cpu_count()} cores")
        one = scenario(tmp / "one", archive, args, 1)
        two = scenario(tmp / "two", archive, args, 2)
        print(f"{'workers':8} {'step span s':>12} {'inst/s':>8} {'wall s':>8}  core share per worker / per-step seconds / workers")
        for r in (one, two):
            print(f"{r['workers']:<8} {r['span']:12.2f} {r['rate']:8.0f} {r['wall']:8.2f}  {r['share']} {r['steps']} {r['hosts']}")
            print(f"{'':8} seconds per phase, all steps: {r['phases']}")
            for worker, start, seconds, phases in r["timeline"]:
                print(f"{'':8} {worker}: +{start:.2f} s, {seconds:.2f} s {phases}")
        print(f"ratio two/one: {two['rate'] / one['rate']:.2f} (steps), {one['wall'] / two['wall']:.2f} (wall); target >= 1.8")
        print("load average (1, 5, 15 min) at the end: %.1f %.1f %.1f" % os.getloadavg())


if __name__ == "__main__":
    main()
