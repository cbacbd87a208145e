"""Group commit: instances of concurrent receiver threads made durable together.

An instance is acknowledged only when its file is on disk under its final name and its
ledger row is committed (design §3). Doing that per instance costs an fdatasync, a folder
fsync and a ledger commit each; with several associations at once they queue behind each
other's flushes. Here the instances that arrived while one flush was running are flushed
together by the next: their files fdatasync'ed, renamed into place, each distinct folder
fsync'ed once, and all their rows appended in one transaction. One association alone works
exactly as before (a group of one); nobody waits for a timer.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path

from axiom_dagster.store.state import StateStore


class _Pending:
    __slots__ = ("values", "tmp", "final", "synced", "done", "id", "error")

    def __init__(self, values: dict, tmp: Path | None, final: Path | None, synced: bool):
        self.values = values
        self.tmp, self.final, self.synced = tmp, final, synced
        self.done = False
        self.id: int | None = None
        self.error: BaseException | None = None


class GroupCommit:
    """Leader/follower group commit, no extra thread: a caller that finds no flush in
    progress flushes every instance queued so far (its own included); callers arriving
    meanwhile queue and wait, and the next of them to wake flushes the next group. Every
    caller returns only after its own file and row are durable, or raises its own error
    (a failed file fails only its instance; a failed transaction fails its whole group)."""

    def __init__(self, store: StateStore):
        self.store = store
        self._cv = threading.Condition()
        self._queue: list[_Pending] = []
        self._busy = False
        self.groups = 0  # flushes done (tests and metrics)

    def append(self, values: dict) -> int:
        """Append a ledger row whose file is already durable (or needs no file)."""
        return self.commit(values)

    def commit(self, values: dict, tmp: Path | None = None, final: Path | None = None, synced: bool = False) -> int:
        """Make `tmp` durable as `final` (fdatasync unless the caller did (`synced`), rename,
        fsync of final's folder), then append `values` to the ledger; return the ledger id."""
        req = _Pending(values, tmp, final, synced)
        with self._cv:
            self._queue.append(req)
            while self._busy and not req.done:
                self._cv.wait()
            if req.done:
                return _result(req)
            self._busy = True
            batch, self._queue = self._queue, []
        try:
            self._flush(batch)
        except BaseException as exc:  # unexpected: every caller of the group sees it
            for r in batch:
                if r.error is None and r.id is None:
                    r.error = exc
        finally:
            with self._cv:
                for r in batch:
                    r.done = True
                self._busy = False
                self.groups += 1
                self._cv.notify_all()
        return _result(req)

    def _flush(self, batch: list[_Pending]) -> None:
        files = [r for r in batch if r.tmp is not None]
        for r in files:
            if not r.synced:
                _try(r, fdatasync_path, r.tmp)
        for r in files:
            if r.error is None:
                _try(r, os.replace, r.tmp, r.final)
        # The renames changed their folders: one fsync per folder before any row points there.
        folders: dict[Path, list[_Pending]] = {}
        for r in files:
            if r.error is None:
                folders.setdefault(r.final.parent, []).append(r)
        for folder, members in folders.items():
            try:
                fsync_dir(folder)
            except OSError as exc:
                for r in members:
                    r.error = exc
        rows = [r for r in batch if r.error is None]
        if not rows:
            return
        try:
            ids = self.store.append_ledger_group([r.values for r in rows])
        except BaseException as exc:
            for r in rows:
                r.error = exc
            raise
        for r, ledger_id in zip(rows, ids):
            r.id = ledger_id


def _try(req: _Pending, fn, *args) -> None:
    try:
        fn(*args)
    except OSError as exc:
        req.error = exc


def fdatasync_path(path: Path) -> None:
    # fdatasync: data plus the size/allocation needed to read it back reach the disk (only
    # timestamps may lag): all an acknowledged instance needs. Any descriptor will do.
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fdatasync(fd)
    finally:
        os.close(fd)


def fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _result(req: _Pending) -> int:
    if req.error is not None:
        raise req.error
    return req.id
