"""One batch of studies through validate → morph → route → catalog rows, in parallel.

Plain Python: the Dagster asset calls `run_batch` and reports what it returns. Work is
split into chunks processed by a process pool; each worker reads a file once, validates it,
morphs it and writes every destination's copy, and returns small result records.
"""
from __future__ import annotations

import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Sequence

from axiom_dagster.ai.standardize import ResolveReport, resolve_batch
from axiom_dagster.catalog.tables import write_batch
from axiom_dagster.catalog.uid_index import UidIndex
from axiom_dagster.crosswalks.misses import record_misses
from axiom_dagster.config.destinations import FilesystemDestination
from axiom_dagster.config.models import AxiomConfig, PipelineConfig
from axiom_dagster.destinations.staging import initial_states, route_roots
from axiom_dagster.rules.morph import Morpher, PassThrough
from axiom_dagster.ingest import page_cache
from axiom_dagster.store import audit
from axiom_dagster.store.records import LedgerRow
from axiom_dagster.store.state import StateStore
from axiom_dagster.ingest.redaction import describe_exception
from axiom_dagster.pipeline.arrivals import plan_arrivals
from axiom_dagster.pipeline.worker import (
    InstanceResult, RouteTarget, WorkerSettings, morpher_for, process_chunk, quarantine, start_worker,
)


@dataclass
class BatchResult:
    batch_id: int
    instances: int = 0
    studies: int = 0
    delivered: int = 0
    failed: int = 0
    bytes: int = 0
    seconds: float = 0.0
    catalog_file: str | None = None
    failed_studies: set[str] = field(default_factory=set)
    stage_failures: dict[str, int] = field(default_factory=dict)
    catalog_rows: list[dict] = field(default_factory=list)
    # Arrivals of the batch: superseded by a newer copy, or identical duplicates.
    arrivals_superseded: int = 0
    duplicates: int = 0
    arrivals: int = 0  # ledger rows in the batch's manifest
    quarantined: int = 0
    superseded: list[str] = field(default_factory=list)  # SOP Instance UIDs whose older catalog row this batch replaced
    # Where the time went: process (workers), sync (durability), record (state + catalog).
    phase_seconds: dict[str, float] = field(default_factory=dict)
    lookup_misses: int = 0  # distinct crosswalk keys missed in this batch
    ai: ResolveReport | None = None


def run_batch(
    config: AxiomConfig,
    store: StateStore,
    batch_id: int,
    run_id: str,
    *,
    morpher_factory: Callable[[], Morpher] = PassThrough,
    log: Callable[[str], None] = lambda _msg: None,
) -> BatchResult:
    started = time.perf_counter()
    batch = store.batch(batch_id)
    if batch is None:
        raise ValueError(f"batch {batch_id} does not exist in the state store")
    manifest = store.batch_manifest(batch_id)
    ai_report = resolve_batch(config, [r.path for r in manifest], run_id, log)  # before workers fork
    morpher_for(morpher_factory)  # compile here: a bad rule or missing secret fails the run clearly
    store.start_batch(batch_id, run_id)
    settings = WorkerSettings(
        targets=tuple(RouteTarget(*root) for root in route_roots(config)),
        quarantine_root=config.quarantine_path,
        batch_id=batch_id,
        run_id=run_id,
        morpher_factory=morpher_factory,
    )
    try:
        phase = time.perf_counter()
        earlier = store.earlier_winners([r.sop_uid for r in manifest], batch_id)
        plan = plan_arrivals(manifest, earlier, config.pipeline.arrival_winner)
        results = _process(plan.groups, settings, config.pipeline)
        study_of = {r.id: r.study_uid for r in manifest}
        results += [
            InstanceResult(ledger_id, study_of[ledger_id], sop, decision=decision, winner_ledger_id=winner)
            for ledger_id, sop, decision, winner in plan.decided
        ]
        process_seconds = time.perf_counter() - phase
        outcome = _record(config, store, batch.partition, batch_id, run_id, results)
        outcome.phase_seconds["process"] = round(process_seconds, 3)
        outcome.ai = ai_report
    except BaseException as exc:
        store.fail_batch(batch_id, f"run failed: {describe_exception(exc)}",
                         config.pipeline.max_batch_attempts, config.pipeline.retry_delay_seconds)
        raise
    outcome.seconds = time.perf_counter() - started
    outcome.studies = len({r.study_uid for r in manifest})
    outcome.arrivals = len(manifest)
    log(
        f"batch {batch_id}: {outcome.instances} instances of {outcome.studies} studies, "
        f"{outcome.delivered} deliveries, {outcome.failed} failed, {outcome.seconds:.2f}s "
        f"({', '.join(f'{k} {v:.2f}s' for k, v in outcome.phase_seconds.items())})"
    )
    return outcome


def _process(groups: Sequence[list[LedgerRow]], settings: WorkerSettings, pipeline: PipelineConfig) -> list[InstanceResult]:
    workers = pipeline.workers or os.cpu_count() or 1
    if workers == 1 or len(groups) < 64:
        return process_chunk(list(groups), settings)
    # Several chunks per worker so a slow chunk does not leave a core idle at the end.
    size = max(16, len(groups) // (workers * 4))
    chunks = [list(groups[i : i + size]) for i in range(0, len(groups), size)]
    # fork starts workers in milliseconds (forkserver/spawn: ~1 s per run, measured). The
    # children run only pydicom and file I/O; CPython re-creates the logging and import
    # locks after fork, so the run process's other threads cannot deadlock them.
    ctx = multiprocessing.get_context(pipeline.start_method)
    if pipeline.start_method == "forkserver":
        ctx.set_forkserver_preload(["axiom_dagster.pipeline.worker"])
    results: list[InstanceResult] = []
    lost: list[list[LedgerRow]] = []  # groups of chunks whose worker process died
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=start_worker) as pool:
        futures = [pool.submit(process_chunk, chunk, settings) for chunk in chunks]
        for chunk, future in zip(chunks, futures):
            try:
                results.extend(future.result())
            except Exception:  # BrokenProcessPool: a worker crashed (C extension, memory)
                lost.extend(chunk)
    results.extend(_isolate(lost, settings, ctx))
    return results


def _isolate(groups: Sequence[list[LedgerRow]], settings: WorkerSettings, ctx) -> list[InstanceResult]:
    """Process the arrivals of a crashed chunk one by one, each in its own worker process, so
    the one that kills its process is quarantined and the others go on."""
    results = []
    for row in (row for group in groups for row in group):
        try:
            with ProcessPoolExecutor(max_workers=1, mp_context=ctx, initializer=start_worker) as pool:
                results.extend(pool.submit(process_chunk, [[row]], settings).result())
        except Exception as exc:
            result = InstanceResult(row.id, row.study_uid, row.sop_uid)
            results.append(quarantine(result, row, settings, "validate",
                                      f"worker process died reading this instance: {describe_exception(exc)}"))
    return results


def _record(config, store: StateStore, partition: str, batch_id: int, run_id: str, results) -> BatchResult:
    out = BatchResult(batch_id=batch_id, instances=len(results))
    deliveries = initial_states(config, [d for r in results for d in r.deliveries])
    # Routed files must be on disk before their deliveries are recorded as done.
    phase = time.perf_counter()
    os.sync()
    routes = _routes(config, results)
    page_cache.release(r["location"] for r in routes)  # folder copies: synced now, not read by us again
    out.phase_seconds["sync"] = round(time.perf_counter() - phase, 3)
    phase = time.perf_counter()
    store.record_deliveries(deliveries)
    out.catalog_rows = [r.catalog_row for r in results if r.catalog_row]
    if out.catalog_rows:
        written = write_batch(config.catalog_path, partition, f"batch-{batch_id:08d}", out.catalog_rows,
                              index=UidIndex(store.engine, config.catalog_path))
        out.catalog_file, out.superseded = written.file, written.superseded
    store.record_exceptions([r.exception for r in results if r.exception])
    store.record_arrival_decisions([
        {"ledger_id": r.ledger_id, "sop_uid": r.sop_uid, "decision": "failed" if r.exception else r.decision,
         "winner_ledger_id": r.winner_ledger_id, "batch_id": batch_id, "run_id": run_id}
        for r in results
    ])
    out.quarantined = sum(1 for r in results if r.exception)
    out.arrivals_superseded = sum(1 for r in results if r.decision == "superseded")
    out.duplicates = sum(1 for r in results if r.decision == "duplicate")
    out.delivered = sum(1 for d in deliveries if d["status"] in ("confirmed", "pending"))
    out.failed = sum(1 for r in results if r.exception) + sum(1 for d in deliveries if d["status"] == "failed")
    out.bytes = sum(r.bytes for r in results)
    for r in results:
        if r.exception:
            out.stage_failures[r.exception["stage"]] = out.stage_failures.get(r.exception["stage"], 0) + 1
    out.failed_studies = {r.study_uid for r in results if r.exception} | {
        d["study_uid"] for d in deliveries if d["status"] == "failed"
    }
    store.finish_batch(batch_id, out.failed_studies)
    store.record_audit(_study_audit(results, batch_id, run_id))
    out.lookup_misses = record_misses(store.engine, (m for r in results for m in r.lookup_misses), run_id)
    audit.record_routes(store, routes, actor="study_pipeline", batch_id=batch_id, run_id=run_id)
    out.phase_seconds["record"] = round(time.perf_counter() - phase, 3)
    return out


def _routes(config, results: Sequence[InstanceResult]) -> list[dict]:
    """Which instance went to which folder, with the content hash of each copy. A network
    destination's copy is only staged here: its route is recorded when the destination
    confirms it, with the hash of what was sent (destinations/delivery)."""
    network = {d.name for d in config.destinations if not isinstance(d, FilesystemDestination)}
    return [
        {**{k: d[k] for k in ("ledger_id", "study_uid", "sop_uid", "destination", "location")},
         "content_sha256": r.content_hashes[d["destination"]]}
        for r in results for d in r.deliveries if d["status"] == "delivered" and d["destination"] not in network
    ]


def _study_audit(results: Sequence[InstanceResult], batch_id: int, run_id: str) -> list[dict]:
    """One audit row per study of the batch: counts, destinations and the rules that matched."""
    per_study: dict[str, dict] = {}
    for r in results:
        entry = per_study.setdefault(
            r.study_uid, {"batch_id": batch_id, "instances": 0, "failed": 0, "destinations": set(), "rules": set()}
        )
        entry["instances"] += 1
        entry["failed"] += bool(r.exception) or any(d["status"] == "failed" for d in r.deliveries)
        entry["destinations"].update(d["destination"] for d in r.deliveries if d["status"] == "delivered")
        entry["rules"].update(r.matched_rules)
    return [
        {
            "actor": "study_pipeline", "action": "study_processed", "study_uid": uid, "run_id": run_id,
            "detail": {**e, "destinations": sorted(e["destinations"]), "rules": sorted(e["rules"])},
        }
        for uid, e in per_study.items()
    ]
