from datetime import datetime, timedelta, timezone

from axiom_dagster.store.state import StateStore


def _row(i, study="1.2.3", when=None):
    when = when or datetime(2025, 3, 1, 12, 0, tzinfo=timezone.utc)
    return dict(
        received_at=when, arrival_date=when.strftime("%Y-%m-%d"), study_uid=study,
        series_uid=f"{study}.1", sop_uid=f"{study}.1.{i}", sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
        transfer_syntax_uid="1.2.840.10008.1.2.1", path=f"/x/{i}.dcm", size=100 + i, source="t",
        calling_ae="MOD", called_ae="AXIOM", source_ip="127.0.0.1", association_id=None,
    )


def test_migrate_is_idempotent_and_versioned(store: StateStore):
    from alembic.script import ScriptDirectory

    from axiom_dagster.store.state import MIGRATIONS

    store.migrate()
    assert store.schema_revision() == ScriptDirectory(str(MIGRATIONS)).get_current_head()


def test_ledger_ids_are_monotonic_and_read_after_cursor(store: StateStore):
    ids = [store.append_ledger(**_row(i)) for i in range(5)]
    assert ids == sorted(ids) and len(set(ids)) == 5
    after = store.ledger_after(ids[1], limit=2)
    assert [r.id for r in after] == ids[2:4]
    assert after[0].received_at.tzinfo is not None
    assert store.ledger_count() == 5


def test_a_ledger_group_is_one_insert_with_each_rows_id_and_values(store: StateStore):
    """append_ledger_group writes a group in one statement (as plain SQL to the driver):
    each row gets its own id, in order, and reads back as SQLAlchemy itself would write it
    (timezone-aware datetimes included), also past one statement's rows and with NULLs."""
    when = datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=timezone.utc)
    first = store.append_ledger_group([_row(i, when=when) for i in range(3)])
    rows = [{**_row(i, study="1.2.4", when=when + timedelta(seconds=i)), "sha256": f"{i:064d}"} for i in range(1203)]
    rows[7]["sop_class_uid"] = None
    more = store.append_ledger_group(rows)
    assert len(first) == 3 and len(more) == 1203 and first + more == sorted(set(first + more))
    back = {r.id: r for r in store.ledger_after(0, 2000)}
    assert [back[i].sop_uid for i in first] == ["1.2.3.1.0", "1.2.3.1.1", "1.2.3.1.2"]
    for i, lid in enumerate(more):
        r = back[lid]
        assert (r.sop_uid, r.size, r.sha256) == (f"1.2.4.1.{i}", 100 + i, f"{i:064d}")
        assert r.received_at == when + timedelta(seconds=i)
    assert back[more[7]].sop_class_uid is None and store.append_ledger_group([]) == []
    # stored exactly as SQLAlchemy's own INSERT stores it (SQLite keeps datetimes as text)
    store.append_ledger_many([_row(0, study="1.2.5", when=when)])
    with store.engine.connect() as conn:
        stored = dict(conn.exec_driver_sql("SELECT study_uid, received_at FROM ledger WHERE sop_uid IN "
                                           "('1.2.3.1.0', '1.2.5.1.0')").all())
    assert stored["1.2.3"] == stored["1.2.5"]


def test_a_ledger_group_that_the_database_refuses_raises_sqlalchemys_error(store: StateStore):
    """The group's driver-level INSERT fails as SQLAlchemy's own would (the receivers answer
    a SQLAlchemyError with Out of Resources), on the pool's connection and on an AUTOCOMMIT one."""
    import pytest
    from sqlalchemy.exc import IntegrityError

    bad = {**_row(1), "sop_uid": None}  # NOT NULL
    with pytest.raises(IntegrityError):
        store.append_ledger_group([_row(0), bad])
    conn = store.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    try:
        with pytest.raises(IntegrityError):
            store.append_ledger_group([bad], conn)
        assert store.append_ledger_group([_row(2)], conn)  # the connection is usable again
    finally:
        conn.close()
    assert [r.sop_uid for r in store.ledger_after(0, 10)] == ["1.2.3.1.2"]


def test_batch_manifest_takes_only_unbatched_rows(store: StateStore):
    for i in range(3):
        store.append_ledger(**_row(i))
    store.note_arrivals(store.ledger_after(0, 100))
    first = store.create_batch("2025-03-01", ["1.2.3"])
    assert first.instances == 3
    # Two more instances of the same study arrive later: the next batch gets only those.
    for i in range(3, 5):
        store.append_ledger(**_row(i))
    store.note_arrivals(store.ledger_after(3, 100))
    assert store.study("1.2.3")["status"] == "receiving"
    assert store.study("1.2.3")["instances_received"] == 5
    second = store.create_batch("2025-03-01", ["1.2.3"])
    assert [r.sop_uid for r in store.batch_manifest(second.id)] == ["1.2.3.1.3", "1.2.3.1.4"]
    assert len(store.batch_manifest(first.id)) == 3


def test_deliveries_upsert_counts_attempts(store: StateStore):
    ledger_id = store.append_ledger(**_row(0))
    delivery = dict(ledger_id=ledger_id, destination="a", study_uid="1.2.3", sop_uid="1.2.3.1.0",
                    status="failed", location=None, error="disk full", batch_id=None, run_id="r1")
    store.record_deliveries([delivery])
    store.record_deliveries([{**delivery, "status": "delivered", "location": "/a/x.dcm", "error": None}])
    (row,) = store.deliveries_for([ledger_id])
    assert (row["status"], row["attempts"], row["error"]) == ("delivered", 2, None)


def test_association_end_marks_studies_closed(store: StateStore):
    store.open_association("a1", "t", "MOD", "AXIOM", "127.0.0.1")
    store.append_ledger(**{**_row(0), "association_id": "a1"})
    store.append_ledger(**{**_row(1, study="1.2.4"), "association_id": None})
    assert store.studies_with_all_associations_closed(["1.2.3", "1.2.4"]) == set()
    store.close_association("a1", 1)
    assert store.studies_with_all_associations_closed(["1.2.3", "1.2.4"]) == {"1.2.3"}


def test_stale_requested_batches(store: StateStore):
    store.append_ledger(**_row(0))
    store.note_arrivals(store.ledger_after(0, 10))
    batch = store.create_batch("2025-03-01", ["1.2.3"])
    now = datetime.now(timezone.utc)
    assert store.stale_requested_batches(now - timedelta(hours=1), 10) == []
    assert [b.id for b in store.stale_requested_batches(now + timedelta(seconds=1), 10)] == [batch.id]


def test_group_commit_ledger_concurrent_appends(store: StateStore):
    import threading

    from axiom_dagster.ingest.group_commit import GroupCommit

    ledger = GroupCommit(store)
    groups = []
    real = store.append_ledger_group

    def counting(rows, connection=None):
        groups.append(len(rows))
        return real(rows, connection)

    store.append_ledger_group = counting
    ids: dict[int, int] = {}

    def worker(k):
        for i in range(25):
            ids[k * 100 + i] = ledger.append(_row(k * 100 + i))

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rows = store.ledger_after(0, 1000)
    assert len(rows) == 100 and sorted(ids.values()) == [r.id for r in rows]
    by_id = {r.id: r for r in rows}
    assert all(by_id[lid].sop_uid == f"1.2.3.1.{i}" for i, lid in ids.items())
    assert sum(groups) == 100


def test_group_commit_ledger_error_reaches_every_caller_of_the_group(store: StateStore):
    import pytest

    from axiom_dagster.ingest.group_commit import GroupCommit

    ledger = GroupCommit(store)
    with pytest.raises(Exception):
        ledger.append({**_row(0), "study_uid": None})  # NOT NULL violated: nothing committed
    assert store.ledger_count() == 0
    assert ledger.append(_row(1)) >= 1  # the writer recovers
