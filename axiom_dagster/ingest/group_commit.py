"""Group commit: instances of concurrent receiver threads made durable together.

An instance is acknowledged only when its file is on disk under its final name and its
ledger row is committed (design §3). Doing that per instance costs an fdatasync, a folder
fsync and a ledger commit each; with several associations at once they queue behind each
other's flushes. Here the instances that arrived while one flush was running are flushed
together by the next, and all their rows are appended in one INSERT that is its own transaction.
One association alone works exactly as before (a group of one); nobody waits for a timer.

Files are made durable in one of two ways:
- filesystem (`fs`, ingest/fs_sync.py, the default on Linux): the group's files are renamed
  into place, then one syncfs makes all their data, names and new folders durable at once.
  A final name may thus exist, after a power loss, with incomplete data and no ledger row:
  the landing zone checks an existing file's hash before it relies on it (landing.py).
- file by file: each file fdatasync'ed (unless its receiver did), renamed, each distinct
  folder fsync'ed once.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path

from axiom_dagster.ingest.fs_sync import FilesystemSync
from axiom_dagster.store.ledger_ops import ROWS_PER_INSERT
from axiom_dagster.store.state import StateStore


class _Pending:
    __slots__ = ("values", "tmp", "final", "synced", "files_done", "done", "id", "error")

    def __init__(self, values: dict, tmp: Path | None, final: Path | None, synced: bool):
        self.values = values
        self.tmp, self.final, self.synced = tmp, final, synced  # tmp None, final set: a file landed before
        self.files_done = False
        self.done = False
        self.id: int | None = None
        self.error: BaseException | None = None


class GroupCommit:
    """Leader/follower group commit in two stages, no extra thread. Stage one makes a group's
    files durable, stage two appends its rows (one INSERT per 500 rows, each its own
    transaction); while one group commits its rows, the next group's files are being synced
    (a row is still committed only after its file is durable). In each stage, a caller that finds no flush in progress flushes
    every instance queued for that stage so far (its own included); callers arriving
    meanwhile queue and wait, and the next of them to wake flushes the next group. Every
    caller returns only after its own file and row are durable, or raises its own error
    (a failed file fails only its instance; a failed INSERT fails its rows and the group's
    later ones)."""

    def __init__(self, store: StateStore, fs: FilesystemSync | None = None):
        self.store = store
        self.fs = fs  # None: file by file
        self._cv = threading.Condition()
        self._files_queue: list[_Pending] = []
        self._files_busy = False
        self._rows_queue: list[_Pending] = []
        self._rows_busy = False
        self.groups = 0  # ledger transactions done (tests and metrics)
        self._conn = None  # the ledger stage's own connection, opened on first use

    def close(self) -> None:
        """Release the ledger connection (it is opened again when needed)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # closing a broken connection
                pass

    def append(self, values: dict, existing: Path | None = None) -> int:
        """Append a ledger row for a file already under its final name (`existing`: landed
        before, perhaps by a flush still in progress here or in another process: with `fs`
        the group's syncfs covers it), or for no file."""
        return self.commit(values, None, existing)

    def commit(self, values: dict, tmp: Path | None = None, final: Path | None = None, synced: bool = False) -> int:
        """Make `tmp` durable as `final` (renamed, then syncfs of the group; or: fdatasync
        unless the caller did (`synced`), rename, fsync of final's folder), then append
        `values` to the ledger; return the ledger id."""
        req = _Pending(values, tmp, final, synced)
        with self._cv:
            self._files_queue.append(req)
            while self._files_busy and not req.files_done:
                self._cv.wait()
            batch = None
            if not req.files_done:
                self._files_busy = True
                batch, self._files_queue = self._files_queue, []
        if batch is not None:
            try:
                self._sync_files(batch)
            except BaseException as exc:  # unexpected: every caller of the group sees it
                for r in batch:
                    r.error = r.error or exc
            finally:
                with self._cv:
                    for r in batch:
                        r.files_done = True
                    self._rows_queue += batch
                    self._files_busy = False
                    self._cv.notify_all()
        with self._cv:
            while self._rows_busy and not req.done:
                self._cv.wait()
            if req.done:
                return _result(req)
            self._rows_busy = True
            batch, self._rows_queue = self._rows_queue, []
        try:
            self._append_rows(batch)
        except BaseException as exc:
            for r in batch:
                if r.error is None and r.id is None:
                    r.error = exc
        finally:
            with self._cv:
                for r in batch:
                    r.done = True
                self._rows_busy = False
                self.groups += 1
                self._cv.notify_all()
        return _result(req)

    def _sync_files(self, batch: list[_Pending]) -> None:
        files = [r for r in batch if r.final is not None]  # new files, and files landed before
        covered = _covered(self.fs, files) if self.fs is not None else set()
        # Not on the synced filesystem (or no syncfs): new files one by one; a file landed
        # before was synced before its rename (in the file-by-file way it is not synced again).
        one_by_one = [r for r in files if r.error is None and r not in covered and (r.tmp is not None or self.fs)]
        for r in one_by_one:
            if r.tmp is None:
                _try(r, fdatasync_path, r.final)
            elif not r.synced:
                _try(r, fdatasync_path, r.tmp)
        for r in files:
            if r.tmp is not None and r.error is None:
                _try(r, os.replace, r.tmp, r.final)
        if any(r.error is None for r in covered):
            try:
                self.fs.sync()  # the group's data, renames and new folders (and files landed before)
            except OSError as exc:
                for r in covered:
                    r.error = r.error or exc
        # The renames changed their folders: one fsync per folder before any row points there.
        folders: dict[Path, list[_Pending]] = {}
        for r in one_by_one:
            if r.error is None:
                folders.setdefault(r.final.parent, []).append(r)
        for folder, members in folders.items():
            try:
                fsync_dir(folder)
            except OSError as exc:
                for r in members:
                    r.error = exc

    def _append_rows(self, batch: list[_Pending]) -> None:
        rows = [r for r in batch if r.error is None]
        for start in range(0, len(rows), ROWS_PER_INSERT):  # each statement its own transaction
            chunk = rows[start:start + ROWS_PER_INSERT]
            try:
                if self._conn is None:
                    self._conn = _autocommit_connection(self.store)
                ids = self.store.append_ledger_group([r.values for r in chunk], self._conn)
            except BaseException as exc:
                for r in rows[start:]:
                    r.error = exc
                self.close()  # perhaps broken (database restarted): the next group connects anew
                raise
            for r, ledger_id in zip(chunk, ids):
                r.id = ledger_id


def _autocommit_connection(store: StateStore):
    """The ledger stage's own connection (only its leader uses it), outside the pool (its
    isolation level is never reset for others), in AUTOCOMMIT: each INSERT commits itself."""
    conn = store.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    conn.detach()
    return conn


def _covered(fs: FilesystemSync, files: list[_Pending]) -> set:
    """The files whose final folder is on the filesystem `fs` syncs."""
    covered = set()
    for r in files:
        try:
            if fs.covers(r.final.parent):
                covered.add(r)
        except OSError as exc:
            r.error = exc
    return covered


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
