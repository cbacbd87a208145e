"""Deliver what is due: per destination, claim due instances, send them study by study (one
association / request batch per study chunk), record each instance's answer, schedule retries
and open exceptions. Destinations run in parallel and independently: an unreachable one fails
its own instances fast (and retries them later) without holding up the others.
"""
from __future__ import annotations

import hashlib
import os
import threading
import time
from collections import Counter
import multiprocessing
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from itertools import groupby
from pathlib import Path

from pydicom import dcmread

from axiom_dagster.config.destinations import (
    DicomDestination,
    FilesystemDestination,
    GcsDestination,
    HealthcareDestination,
    RetryPolicy,
    S3Destination,
    StowDestination,
)
from axiom_dagster.config.models import AxiomConfig
from axiom_dagster.destinations.base import CONNECTION_FAILURES, DestinationUnreachable, Sender
from axiom_dagster.destinations.paths import render_path
from axiom_dagster.destinations.retry import next_attempt
from axiom_dagster.store.deliveries import DeliveryState, DueDelivery, Outcome
from axiom_dagster.store.state import StateStore, utcnow


@dataclass
class DeliveryReport:
    destination: str
    claimed: int = 0
    confirmed: int = 0
    failed: int = 0  # to be retried
    exceptions: int = 0  # given up: open exceptions
    verified: int = 0
    seconds: float = 0.0
    reasons: Counter = field(default_factory=Counter)

    def add(self, other: "DeliveryReport") -> None:
        for name in ("claimed", "confirmed", "failed", "exceptions", "verified"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.reasons.update(other.reasons)

    def summary(self) -> str:
        top = "; ".join(f"{n}× {r}" for r, n in self.reasons.most_common(3))
        return (f"{self.destination}: {self.claimed} due, {self.confirmed} confirmed, {self.failed} to retry, "
                f"{self.exceptions} new exceptions, {self.seconds:.2f}s" + (f" ({top})" if top else ""))


class FolderSender:
    """A folder destination as a requeue target: copy the staged file under its template."""

    def __init__(self, config: AxiomConfig, dest: FilesystemDestination):
        self.root, self.template = config.destination_path(dest), dest.path_template

    def send(self, items: list[DueDelivery]) -> list[Outcome]:
        outcomes = []
        for item in items:
            try:
                final = render_path(self.root, self.template, dcmread(item.source_path, stop_before_pixels=True))
                final.parent.mkdir(parents=True, exist_ok=True)
                tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
                data = Path(item.source_path).read_bytes()
                with open(tmp, "wb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, final)
                outcomes.append(Outcome(item.id, True, location=str(final), content_sha256=hashlib.sha256(data).hexdigest()))
            except Exception as exc:
                outcomes.append(Outcome(item.id, False, reason=f"folder copy failed: {type(exc).__name__}"))
        return outcomes

    def verify(self, study_uid: str, sop_uids: set[str]) -> set[str]:
        return sop_uids


def make_sender(config: AxiomConfig, dest) -> Sender:
    if isinstance(dest, DicomDestination):
        from axiom_dagster.destinations.dimse import CStoreSender

        return CStoreSender(dest)
    if isinstance(dest, (StowDestination, HealthcareDestination)):
        from axiom_dagster.destinations.dicomweb import StowSender

        return StowSender.for_destination(dest)
    if isinstance(dest, GcsDestination):
        from axiom_dagster.destinations.buckets import GcsSender

        return GcsSender(dest)
    if isinstance(dest, S3Destination):
        from axiom_dagster.destinations.buckets import S3Sender

        return S3Sender(dest)
    return FolderSender(config, dest)


def _failed(items: list[DueDelivery], reason: str, code: int | None = None) -> list[Outcome]:
    return [Outcome(i.id, False, status_code=code, reason=reason) for i in items]


def _verify(sender: Sender, study_uid: str, items: list[DueDelivery], outcomes: list[Outcome]) -> list[Outcome]:
    """Query the destination for what it confirmed; confirmed but not found fails."""
    by_id = {i.id: i for i in items}
    confirmed = {by_id[o.delivery_id].sop_uid for o in outcomes if o.confirmed}
    if not confirmed:
        return outcomes
    try:
        found = sender.verify(study_uid, confirmed)
    except DestinationUnreachable:
        return outcomes  # confirmed by the answer; verification left for later
    return [
        o if not o.confirmed else
        replace(o, verified=True)
        if by_id[o.delivery_id].sop_uid in found else
        Outcome(o.delivery_id, False, o.status_code, "confirmed by the answer but not found by query-back")
        for o in outcomes
    ]


def deliver_destination(config: AxiomConfig, store: StateStore, name: str, *, run_id: str | None = None,
                        sender: Sender | None = None) -> DeliveryReport:
    """Send every due instance of one destination (up to the per-run limit), `parallel`
    study chunks at a time, each on its own association / request. When the destination
    confirms instances while others wait out a backoff after connection failures (it was
    down and is back), those are sent at once in a second round."""
    started, called_at = time.perf_counter(), utcnow()
    dest = next(d for d in config.destinations if d.name == name)
    state = DeliveryState(store)
    limit = config.delivery.max_instances_per_run
    report = _deliver_due(config, state, dest, limit, run_id, sender)
    # Back = confirmed something and never found unreachable in this call; only rows that
    # failed before it are expedited (what failed now waits: the peer may be going down).
    back = report.confirmed and not any(report.reasons[r] for r in report.reasons if r.startswith(CONNECTION_FAILURES))
    if back and report.claimed < limit and state.expedite(name, CONNECTION_FAILURES, failed_before=called_at):
        report.add(_deliver_due(config, state, dest, limit - report.claimed, run_id, sender))
    report.seconds = time.perf_counter() - started
    return report


def _deliver_due(config: AxiomConfig, state: DeliveryState, dest, limit: int, run_id, sender) -> DeliveryReport:
    items = state.claim_due(dest.name, limit, config.delivery.sent_lease_seconds)
    report = DeliveryReport(dest.name, claimed=len(items))
    if not items:
        return report
    state.set_run([i.id for i in items], run_id)
    batch_size: int = getattr(dest, "batch_size", 200)
    chunks = [
        (study_uid, group[start : start + batch_size])
        for study_uid, group in ((s, list(g)) for s, g in groupby(items, key=lambda i: i.study_uid))
        for start in range(0, len(group), batch_size)
    ]
    run = _Run(config, dest, state, run_id, report, sender)
    workers = min(getattr(dest, "parallel", 1), len(chunks))
    if workers == 1:
        for study_uid, chunk in chunks:
            run.deliver_chunk(study_uid, chunk)
    elif isinstance(dest, DicomDestination) and sender is None:
        _deliver_in_processes(run, chunks, workers)
    else:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"deliver-{dest.name}") as pool:
            list(pool.map(lambda c: run.deliver_chunk(*c), chunks))
    return report


def _deliver_in_processes(run: "_Run", chunks: list, workers: int) -> None:
    """C-STORE associations in worker processes: pynetdicom is CPU-bound Python (one reactor
    thread per association), so threads would share one GIL. The parent records outcomes."""
    ctx = multiprocessing.get_context(run.config.pipeline.start_method)
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        futures = {pool.submit(_send_chunk, run.config, run.dest, study_uid, chunk): chunk for study_uid, chunk in chunks}
        for future in as_completed(futures):
            chunk = futures[future]
            if future.cancelled():
                continue
            outcomes, unreachable = future.result()
            if unreachable is not None and run.unreachable is None:
                run.unreachable = unreachable
                for other in futures:  # not started yet: fail fast with the same reason
                    if other.cancel():
                        run.record(futures[other], _failed(futures[other], unreachable.reason, unreachable.status_code))
            run.record(chunk, outcomes)


_CHILD_SENDERS: dict[str, Sender] = {}


def _send_chunk(config: AxiomConfig, dest, study_uid: str, chunk: list[DueDelivery]):
    """In a worker process: send one study chunk; returns (outcomes, unreachable or None)."""
    if dest.name not in _CHILD_SENDERS:
        _CHILD_SENDERS[dest.name] = make_sender(config, dest)
    sender = _CHILD_SENDERS[dest.name]
    try:
        outcomes = sender.send(chunk)
        return (_verify(sender, study_uid, chunk, outcomes) if dest.verify else outcomes), None
    except DestinationUnreachable as exc:
        return _failed(chunk, exc.reason, exc.status_code), exc
    except Exception as exc:
        return _failed(chunk, f"sender error: {type(exc).__name__}"), None


class _Run:
    """One destination's delivery call: chunks share the report and, once the destination
    proved unreachable, fail fast with its reason. One sender per worker thread."""

    def __init__(self, config, dest, state: DeliveryState, run_id, report: DeliveryReport, sender: Sender | None):
        self.config, self.dest, self.state, self.run_id, self.report = config, dest, state, run_id, report
        self.policy: RetryPolicy = getattr(dest, "retry", RetryPolicy())
        self.shared_sender = sender
        self.local = threading.local()
        self.lock = threading.Lock()
        self.unreachable: DestinationUnreachable | None = None

    def sender(self) -> Sender:
        if self.shared_sender is not None:
            return self.shared_sender
        if not hasattr(self.local, "sender"):
            self.local.sender = make_sender(self.config, self.dest)
        return self.local.sender

    def deliver_chunk(self, study_uid: str, chunk: list[DueDelivery]) -> None:
        if self.unreachable is not None:
            outcomes = _failed(chunk, self.unreachable.reason, self.unreachable.status_code)
        else:
            try:
                sender = self.sender()
                outcomes = sender.send(chunk)
                if getattr(self.dest, "verify", False):
                    outcomes = _verify(sender, study_uid, chunk, outcomes)
            except DestinationUnreachable as exc:
                self.unreachable = exc
                outcomes = _failed(chunk, exc.reason, exc.status_code)
            except Exception as exc:
                outcomes = _failed(chunk, f"sender error: {type(exc).__name__}")
        self.record(chunk, outcomes)

    def record(self, chunk: list[DueDelivery], outcomes: list[Outcome]) -> None:
        items = {i.id: i for i in chunk}
        now = utcnow()
        retry_at = {
            o.delivery_id: next_attempt(self.policy, items[o.delivery_id].attempts, items[o.delivery_id].first_attempt_at, now)
            for o in outcomes if not o.confirmed
        }
        opened = self.state.record(outcomes, retry_at, items, self.run_id)
        if not self.config.delivery.keep_confirmed_copies:
            _remove_staged(self.config.staging_path, [items[o.delivery_id].source_path for o in outcomes if o.confirmed])
        with self.lock:
            report = self.report
            report.exceptions += opened
            report.confirmed += sum(o.confirmed for o in outcomes)
            report.verified += sum(o.verified for o in outcomes)
            report.failed += sum(1 for o in outcomes if not o.confirmed and retry_at[o.delivery_id] is not None)
            report.reasons.update(o.reason for o in outcomes if not o.confirmed and o.reason)


def _remove_staged(staging: Path, paths: list[str]) -> None:
    """Delete confirmed copies from the outbox (only there: a requeued instance may come from
    elsewhere). Recorded first, removed after: a crash in between leaves a harmless file."""
    for path in paths:
        p = Path(path)
        if p.is_relative_to(staging):
            p.unlink(missing_ok=True)


def deliver_all(config: AxiomConfig, store: StateStore, *, names: list[str] | None = None,
                run_id: str | None = None) -> dict[str, DeliveryReport]:
    """Every configured destination (or the named ones), in parallel, one thread each. A
    folder destination only ever has requeued instances due (the pipeline writes the rest)."""
    names = names if names is not None else [d.name for d in config.destinations]
    if not names:
        return {}
    with ThreadPoolExecutor(max_workers=len(names), thread_name_prefix="deliver") as pool:
        futures = {n: pool.submit(deliver_destination, config, store, n, run_id=run_id) for n in names}
        return {n: f.result() for n, f in futures.items()}


