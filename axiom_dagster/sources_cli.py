"""`axiom sources list|test NAME` and `axiom backfill SOURCE --from --to [--dry-run]` /
`axiom backfill status` (registered by cli.py).

When a dagster-daemon serves the Dagster instance ($DAGSTER_HOME; its backfill loop reported
recently), `axiom backfill` launches a real Dagster asset backfill of the source's
`<source>_archive` partitions (assets/backfill_launch.py) and, with --wait, follows it.
Otherwise (or with --in-process) it runs in this process: day by day through the same core as
the backfill asset, with a progress bar (days and studies), each finished day recorded in the
Dagster instance as a materialization of the asset partition (so the UI shows which days are
done), the landed studies going through the landing sensor and study_pipeline_job meanwhile,
as the daemon would.
"""
from __future__ import annotations

import argparse
import functools
import gc
import os
import sys
import threading
import time
import uuid
from datetime import date
from pathlib import Path


def register(sub, config_arg) -> None:
    p = sub.add_parser("sources", help="list configured sources or test one's connectivity")
    ss = p.add_subparsers(dest="sources_command", required=True)
    q = ss.add_parser("list", help="configured sources")
    q.set_defaults(func=cmd_sources_list)
    config_arg(q)
    q = ss.add_parser("test", help="connectivity check: C-ECHO, a QIDO with limit 1, or the folder")
    q.add_argument("name")
    q.set_defaults(func=cmd_sources_test)
    config_arg(q)

    p = sub.add_parser("backfill", help="backfill a source's archive by StudyDate, or show backfill status")
    p.add_argument("source", help="source name, or 'status'")
    p.add_argument("status_source", nargs="?", help=argparse.SUPPRESS)
    p.add_argument("--from", dest="first", type=date.fromisoformat, help="first StudyDate (YYYY-MM-DD)")
    p.add_argument("--to", dest="last", type=date.fromisoformat, help="last StudyDate (YYYY-MM-DD)")
    p.add_argument("--dry-run", action="store_true", help="query and count only; retrieve nothing")
    p.add_argument("--no-pipeline", action="store_true", help="land only; leave processing to the landing sensor")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (logs, CI)")
    how = p.add_mutually_exclusive_group()
    how.add_argument("--in-process", action="store_true", help="run here even when a Dagster daemon is running")
    how.add_argument("--dagster", action="store_true", help="launch a Dagster backfill (needs a daemon to run it)")
    p.add_argument("--dagster-url", help="launch through this Dagster webserver (e.g. http://127.0.0.1:3000) "
                                         "instead of loading workspace.yaml here")
    p.add_argument("--wait", action="store_true", help="with a Dagster backfill: follow it until it is done")
    p.set_defaults(func=cmd_backfill)


def _config(args):
    from axiom_dagster.config.settings import load_default_config

    return load_default_config(args.config)


def cmd_sources_list(args) -> int:
    config = _config(args)
    if not config.sources:
        print("no sources configured")
    for s in config.sources:
        where = getattr(s, "url", None) or (f"{s.remote_ae}@{s.host}:{s.port} ({s.retrieve})" if s.type == "dimse" else str(config.resolve(s.path)))
        print(f"{s.name}\t{s.type}\t{where}\tpoll {'on' if s.poll.enabled else 'off'} every {s.poll.interval_seconds}s\t"
              f"backfill from {s.backfill.start_date}, {s.backfill.days_per_run} days/run")
    return 0


def cmd_sources_test(args) -> int:
    from axiom_dagster.sources.base import SourceError
    from axiom_dagster.sources.registry import open_source

    config = _config(args)
    try:
        source = open_source(config, args.name)
    except KeyError as exc:
        print(exc.args[0], file=sys.stderr)
        return 2
    started = time.perf_counter()
    try:
        print(f"{args.name}: {source.echo()} in {time.perf_counter() - started:.2f}s")
        return 0
    except SourceError as exc:
        print(f"{args.name}: FAILED: {exc}", file=sys.stderr)
        return 1
    finally:
        source.close()


def cmd_backfill(args) -> int:
    if args.source == "status":
        return _status(args)
    if not (args.first and args.last) or args.first > args.last:
        print("backfill needs --from and --to (YYYY-MM-DD, from <= to)", file=sys.stderr)
        return 2
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from axiom_dagster.ingest.landing import LandingZone
    from axiom_dagster.sources.backfill import backfill_days, days_between
    from axiom_dagster.sources.registry import open_source
    from axiom_dagster.sources.workers import ProcessRetrieval, wants_processes
    from axiom_dagster.store.state import StateStore

    config = _config(args)
    try:
        spec = config.source(args.source)
    except KeyError as exc:
        print(exc.args[0], file=sys.stderr)
        return 2
    if args.first < spec.backfill.start_date:
        print(f"--from is before the source's backfill.start_date ({spec.backfill.start_date})", file=sys.stderr)
        return 2
    if not args.dry_run and not args.in_process and (args.dagster or args.dagster_url or _daemon_serves_instance()):
        return _launch_in_dagster(args, spec)
    store = StateStore(config.state_store_url)
    store.migrate()
    zone = LandingZone.for_config(config, store)
    source = open_source(config, args.source)
    processes = ProcessRetrieval(config, spec.name, spec.backfill.concurrency) if wants_processes(spec) and not args.dry_run else None
    days = days_between(args.first, args.last)
    run_id = f"cli-{uuid.uuid4().hex[:12]}"
    results = []
    done = threading.Event()
    retrieved = [0]  # studies retrieved since the pipeline last ran
    started = time.perf_counter()
    timing = {}
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]

    def retrieve_all(bar, day_task, study_task):
        """Day by day; the main thread meanwhile runs the pipeline over what has landed."""
        def on_study(_outcome):
            retrieved[0] += 1
            bar.advance(study_task)

        try:
            for result in backfill_days(source, zone, days, spec.backfill, dry_run=args.dry_run, run_id=run_id, on_study=on_study,
                                        on_todo=lambda n: bar.update(study_task, total=(bar.tasks[study_task].total or 0) + n),
                                        processes=processes):
                results.append(result)
                bar.advance(day_task)
                if result.error:
                    bar.console.print(f"{result.day}: {result.error}")
        finally:
            if processes is not None:
                processes.close()
            source.close()
            timing["retrieve"] = time.perf_counter() - started
            done.set()

    runs = 0
    pipeline = not (args.dry_run or args.no_pipeline)
    # The pipeline runs whenever its last run is over and a few studies have landed: while
    # retrieval goes on, each run takes what landed during the previous one (batches grow
    # with the retrieval rate); a few studies make a run worth its Dagster overhead.
    threshold = int(os.environ.get("AXIOM_BACKFILL_PIPELINE_STUDIES", 0)) or max(2, config.pipeline.batch_max_studies // 10)
    # What is loaded by now (Dagster, pydicom, SQLAlchemy: a few hundred thousand objects) is
    # left out of this process's garbage collections: a full collection walked it all, ~0.15 s
    # of CPU each, during the pipeline runs; worker processes forked from here inherit that.
    gc.freeze()
    with Progress(*columns, disable=args.no_progress, transient=False) as bar:
        worker = threading.Thread(target=retrieve_all, args=(bar, bar.add_task("days", total=len(days)), bar.add_task("studies", total=0)),
                                  name="backfill-retrieve", daemon=True)
        worker.start()
        recorded = 0  # finished days reported to the Dagster instance so far
        while not done.wait(0.25):
            if pipeline and retrieved[0] >= threshold:
                retrieved[0] = 0
                runs += _process_landed(args)
            # Days as they finish, here (the thread that uses the Dagster instance) while
            # retrieval goes on, not all after it: the end of a backfill is pipeline time.
            recorded = _record_finished_days(spec.name, results, recorded, args.dry_run)
        worker.join()
    _record_finished_days(spec.name, results, recorded, args.dry_run)
    if pipeline:
        runs += _process_landed(args)
    retrieve_seconds = timing["retrieve"]
    _summary(results, retrieve_seconds, time.perf_counter() - started, runs, args.dry_run)
    return 1 if any(r.failed or (r.error and not r.fetched) for r in results) else 0


def _daemon_serves_instance() -> bool:
    if not os.environ.get("DAGSTER_HOME"):
        return False
    from assets.backfill_launch import daemon_running

    return daemon_running(_instance())


def _launch_in_dagster(args, spec) -> int:
    """A Dagster asset backfill of the day partitions; the daemon runs it."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from assets.backfill import backfill_asset_name, partition_keys
    from assets.backfill_launch import LaunchError, launch_backfill, materialized_days, wait_for_backfill

    if args.config:  # the code location loaded for the launch reads $AXIOM_CONFIG
        os.environ["AXIOM_CONFIG"] = str(Path(args.config).resolve())
    instance = _instance()
    asset = backfill_asset_name(spec.name)
    keys = partition_keys(args.first, args.last)
    try:
        # axiom/node: the instance's per-node run limit, shared with the poll sensor's retrieval runs
        backfill_id = launch_backfill(instance, asset, keys, tags={"axiom/source": spec.name, "axiom/node": spec.name},
                                      title=f"{spec.name} {args.first}..{args.last}", url=args.dagster_url)
    except LaunchError as exc:
        print(f"could not launch the Dagster backfill: {exc}", file=sys.stderr)
        return 1
    print(f"launched Dagster backfill {backfill_id}: {asset}, {len(keys)} days ({args.first}..{args.last}); "
          f"follow it in the UI (Overview > Backfills) or with `axiom backfill status {spec.name}`")
    if not args.wait:
        return 0
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    with Progress(*columns, disable=args.no_progress) as bar:
        days = bar.add_task("days", total=len(keys))
        status = wait_for_backfill(instance, backfill_id, on_poll=lambda _s: bar.update(days, completed=materialized_days(instance, asset, keys)))
    done = materialized_days(instance, asset, keys)
    print(f"backfill {backfill_id}: {status}; {done} of {len(keys)} days materialized")
    return 0 if status in ("COMPLETED_SUCCESS", "COMPLETED") and done == len(keys) else 1


@functools.cache
def _instance():
    """One Dagster instance per process (each holds its own storage connections)."""
    from dagster import DagsterInstance

    return DagsterInstance.get() if os.environ.get("DAGSTER_HOME") else DagsterInstance.ephemeral()


def _record_finished_days(source_name: str, results: list, recorded: int, dry_run: bool) -> int:
    """Report the days finished since `recorded` (a day whose query failed is not done)."""
    finished = len(results)  # the retrieval thread appends; this thread reads up to here
    if not dry_run and finished > recorded:
        _record_days(source_name, [r for r in results[recorded:finished] if not (r.error and not (r.fetched or r.skipped))])
    return finished


def _record_days(source_name: str, results) -> None:
    """Finished days as materializations of the backfill asset's partitions (UI status)."""
    from dagster import AssetKey, AssetMaterialization

    from assets.backfill import backfill_asset_name

    instance = _instance()
    key = AssetKey(backfill_asset_name(source_name))
    for r in results:
        instance.report_runless_asset_event(AssetMaterialization(asset_key=key, partition=r.day, metadata=r.metadata()))


def _process_landed(args) -> int:
    from axiom_dagster.demo import run_landed_batches
    from resources import AxiomResource

    if args.config:  # the pipeline job's AxiomResource reads $AXIOM_CONFIG
        os.environ["AXIOM_CONFIG"] = str(Path(args.config).resolve())
    runs, _cursor = run_landed_batches(_instance(), AxiomResource(config_path=args.config or ""))
    return runs


def _summary(results, retrieve_seconds: float, seconds: float, runs: int, dry_run: bool) -> None:
    total = {k: sum(getattr(r, k) for r in results) for k in ("found", "fetched", "skipped", "failed", "instances", "bytes")}
    failed_days = [r.day for r in results if r.error and not (r.fetched or r.skipped)]
    verb = "would fetch" if dry_run else "fetched"
    print(f"{len(results)} days: {total['found']} studies found, {verb} "
          f"{total['found'] - total['skipped'] if dry_run else total['fetched']}, {total['skipped']} already complete, "
          f"{total['failed']} failed; {total['instances']} instances, {total['bytes'] / 1e6:.1f} MB "
          f"in {retrieve_seconds:.1f}s ({total['instances'] / retrieve_seconds if retrieve_seconds else 0:.0f} inst/s)")
    if runs:
        print(f"{runs} pipeline runs; total {seconds:.1f}s")
    if failed_days:
        print(f"days whose query failed (re-run them): {', '.join(failed_days[:10])}")


def _status(args) -> int:
    from axiom_dagster.sources import progress
    from axiom_dagster.store.state import StateStore

    config = _config(args)
    store = StateStore(config.state_store_url)
    store.migrate()
    rows = progress.summary(store, args.status_source)
    if not rows:
        print("no backfill or poll activity recorded")
    for r in rows:
        print(f"{r['source']}\t{r['status']}\t{r['studies']} studies\tStudyDate {r['first_date']}..{r['last_date']}\t"
              f"{r['instances']} instances\t{r['bytes'] / 1e6:.1f} MB")
    for name in sorted({r["source"] for r in rows}):
        for f in progress.failures(store, name, limit=5):
            print(f"  failed {name} {f['study_uid']} (attempts {f['attempts']}): {f['error']}")
    return 0
