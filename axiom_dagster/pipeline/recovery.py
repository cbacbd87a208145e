"""Batches whose run failed, was canceled or died are requested again (the landing sensor's
recovery step, free of Dagster).

The sensor passes `run_failure(batch)`: why the batch's run is known to have ended without
finishing it (its Dagster run failed or was canceled), or None. This module adds what needs
no Dagster: a run process on this host that no longer exists (kill -9, out of memory) has
died. A failed batch waits `retry_delay_seconds`, then is requested again under a new run key
(attempt counter); after `max_batch_attempts` runs it stays failed, visible in `axiom status`
and the API.
"""
from __future__ import annotations

import os
import socket
from datetime import datetime, timezone
from typing import Callable

from axiom_dagster.config.models import PipelineConfig
from axiom_dagster.store.records import Batch
from axiom_dagster.store.state import StateStore

RunFailure = Callable[[dict], "str | None"]


def recover_batches(store: StateStore, settings: PipelineConfig, now: datetime,
                    run_failure: RunFailure, limit: int = 200) -> tuple[list[int], list[Batch]]:
    """(ids of batches found failed this tick, batches requested again now)."""
    failed = []
    for batch in store.unfinished_batches(limit):
        reason = run_failure(batch) or process_died(batch)
        if reason:
            store.fail_batch(batch["id"], reason, settings.max_batch_attempts, settings.retry_delay_seconds)
            failed.append(batch["id"])
    # A failure noticed just now with no delay is due at once (fail_batch stamped it after `now`).
    return failed, store.request_retries(max(now, datetime.now(timezone.utc)), settings.max_batches_per_tick)


def process_died(batch: dict) -> str | None:
    """'run process died' when the batch is running in a process of this host that is gone."""
    pid, host = batch.get("run_pid"), batch.get("run_host")
    if batch["status"] != "running" or not pid or host != socket.gethostname():
        return None
    return None if process_alive(pid) else f"run process {pid} died"


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a killed child not yet reaped by its parent is a zombie: dead for us
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def run_key(batch: Batch) -> str:
    """Run key of a batch's attempt: one run per attempt, never a run key reused."""
    return f"batch-{batch.id}" if batch.attempts <= 1 else f"batch-{batch.id}-attempt-{batch.attempts}"
