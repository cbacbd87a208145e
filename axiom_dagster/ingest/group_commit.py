"""Ledger appends from concurrent receiver threads, several rows per commit."""
from __future__ import annotations

import threading

from axiom_dagster.store.state import StateStore


class _Pending:
    __slots__ = ("values", "done", "id", "error")

    def __init__(self, values: dict):
        self.values = values
        self.done = False
        self.id: int | None = None
        self.error: BaseException | None = None


class GroupCommitLedger:
    """Ledger appends from concurrent receiver threads, several rows per commit.

    Leader/follower group commit, no extra thread and no added wait: a caller that finds no
    commit in progress commits every row queued so far (its own included) in one transaction;
    callers arriving meanwhile queue and wait, and the next of them to wake commits the next
    group. One association alone commits row by row as before. Every caller returns only
    after the transaction holding its row committed (or raises its error): the durability of
    each acknowledged row is that of a single-row commit.
    """

    def __init__(self, store: StateStore):
        self.store = store
        self._cv = threading.Condition()
        self._queue: list[_Pending] = []
        self._busy = False

    def append(self, values: dict) -> int:
        req = _Pending(values)
        with self._cv:
            self._queue.append(req)
            while self._busy and not req.done:
                self._cv.wait()
            if req.done:
                return _result(req)
            self._busy = True
            batch, self._queue = self._queue, []
        try:
            ids = self.store.append_ledger_group([r.values for r in batch])
            for r, ledger_id in zip(batch, ids):
                r.id = ledger_id
        except BaseException as exc:  # the whole group failed: every caller sees the error
            for r in batch:
                r.error = exc
        finally:
            with self._cv:
                for r in batch:
                    r.done = True
                self._busy = False
                self._cv.notify_all()
        return _result(req)


def _result(req: _Pending) -> int:
    if req.error is not None:
        raise req.error
    return req.id
