"""Launch a source's archive backfill as a real Dagster asset backfill (what `axiom backfill`
does when a Dagster daemon serves the instance).

The backfill is created with the GraphQL mutation `launchPartitionBackfill`, the one the UI's
Materialize dialog sends: either executed in this process against the code locations of a
workspace file (dagster-graphql's `execute_query`, as the `dagster-graphql` command does), or
posted to a running webserver. The daemon then runs it like any backfill launched from the UI:
runs of several days each (the asset's BackfillPolicy), the source's concurrency pool, the
partition status per day, retries and cancellation from the UI.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from dagster import AssetKey, DagsterInstance

WORKSPACE = Path(__file__).resolve().parents[1] / "workspace.yaml"
# A daemon whose backfill loop reported within this many seconds is taken as running (it
# reports every 30 s).
HEARTBEAT_SECONDS = 120
DONE = {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}


class LaunchError(RuntimeError):
    pass


def daemon_running(instance: DagsterInstance, now: float | None = None) -> bool:
    """True when a dagster-daemon serving this instance runs the backfill loop."""
    beat = instance.get_daemon_heartbeats().get("BACKFILL")
    return beat is not None and (now or time.time()) - beat.timestamp <= HEARTBEAT_SECONDS


def _params(asset_name: str, partition_keys: list[str], tags: dict[str, str], title: str) -> dict:
    return {"backfillParams": {
        "assetSelection": [{"path": [asset_name]}],
        "partitionNames": partition_keys,
        "fromFailure": False,
        "tags": [{"key": k, "value": v} for k, v in tags.items()],
        "title": title,
    }}


def launch_backfill(instance: DagsterInstance, asset_name: str, partition_keys: list[str], *,
                    tags: dict[str, str], title: str, workspace: Path = WORKSPACE, url: str | None = None) -> str:
    """Create the asset backfill; return its id. Raises LaunchError with Dagster's message."""
    from dagster_graphql.client.query import LAUNCH_PARTITION_BACKFILL_MUTATION

    variables = _params(asset_name, partition_keys, tags, title)
    if url:
        from dagster_graphql.cli import execute_query_against_remote

        result = execute_query_against_remote(url, LAUNCH_PARTITION_BACKFILL_MUTATION, variables)
    else:
        from dagster._core.workspace.context import WorkspaceProcessContext
        from dagster._core.workspace.load_target import WorkspaceFileTarget
        from dagster_graphql.cli import execute_query

        with WorkspaceProcessContext(instance, WorkspaceFileTarget(paths=[str(workspace)])) as context:
            result = execute_query(context, LAUNCH_PARTITION_BACKFILL_MUTATION, variables)
    if result.get("errors"):
        raise LaunchError("; ".join(e.get("message", "?") for e in result["errors"])[:500])
    answer = (result.get("data") or {}).get("launchPartitionBackfill") or {}
    if answer.get("__typename") != "LaunchBackfillSuccess":
        raise LaunchError(f"{answer.get('__typename')}: {answer.get('message', '')}"[:500])
    return answer["backfillId"]


def backfill_status(instance: DagsterInstance, backfill_id: str) -> str:
    backfill = instance.get_backfill(backfill_id)
    return backfill.status.value if backfill else "UNKNOWN"


def materialized_days(instance: DagsterInstance, asset_name: str, partition_keys: list[str]) -> int:
    done = instance.get_materialized_partitions(AssetKey(asset_name))
    return len(done & set(partition_keys))


def wait_for_backfill(instance: DagsterInstance, backfill_id: str, *, poll_seconds: float = 2.0,
                      timeout: float | None = None, on_poll: Callable[[str], None] = lambda _s: None) -> str:
    """Poll until the backfill is done (or `timeout`); return its last status."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        status = backfill_status(instance, backfill_id)
        on_poll(status)
        if status in DONE or (deadline is not None and time.monotonic() > deadline):
            return status
        time.sleep(poll_seconds)
