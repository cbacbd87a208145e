"""The landing sensor's ledger cursor never passes a row that may still become visible: with
two writers, a lower ledger id committed after a higher one is still read (PostgreSQL: a real
open transaction), and a gap that never fills (rolled back) is passed once it has settled."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from axiom_dagster.config.models import PipelineConfig
from axiom_dagster.pipeline.batching import LEDGER_GAP_SETTLE, plan_tick
from tests.store.test_state_store import _row


def _now_row(i: int, study: str) -> dict:
    return _row(i, study=study, when=datetime.now(timezone.utc))


def test_a_lower_id_committed_after_a_higher_one_is_still_read(store):
    if store.url.startswith("sqlite"):
        pytest.skip("SQLite has one writer at a time: ids become visible in order")
    settings = PipelineConfig()
    [first] = store.append_ledger_group([_now_row(0, "1.2.10")])
    with store.engine.connect() as other:
        transaction = other.begin()
        [late] = store.append_ledger_group([_now_row(0, "1.2.11")], other)  # in flight
        [after] = store.append_ledger_group([_now_row(0, "1.2.12")])  # committed first
        assert first < late < after

        plan = plan_tick(store, settings, 0, datetime.now(timezone.utc))
        assert plan.cursor == first  # stops before the id still in flight
        assert store.study("1.2.12")["status"] == "receiving"
        assert store.study("1.2.11") is None
        transaction.commit()

    plan = plan_tick(store, settings, plan.cursor, datetime.now(timezone.utc))
    assert plan.cursor == after
    assert store.study("1.2.11")["status"] == "receiving"  # the late row was read
    assert store.study("1.2.12")["instances_received"] == 1  # read twice, counted once


def test_a_gap_that_never_fills_is_passed_once_settled(store):
    settings = PipelineConfig()
    [first] = store.append_ledger_group([_now_row(0, "1.2.20")])
    with store.engine.connect() as other:  # an insert rolled back: its id is never used
        with other.begin() as transaction:
            store.append_ledger_group([_now_row(0, "1.2.21")], other)
            transaction.rollback()
    [after] = store.append_ledger_group([_now_row(0, "1.2.22")])
    now = datetime.now(timezone.utc)
    if after == first + 1:
        pytest.skip("this database reused the rolled-back id: no gap")
    assert plan_tick(store, settings, first, now).cursor == first
    assert plan_tick(store, settings, first, now + LEDGER_GAP_SETTLE + timedelta(seconds=1)).cursor == after
