"""Re-sent instances: every arrival lands under its own name, the pipeline picks one winner
per SOP Instance UID (latest complete arrival), identical bytes are a no-op, the others are
recorded as superseded, and a damaged re-send never replaces a good copy."""
from datetime import datetime, timezone
from pathlib import Path

from axiom_dagster.catalog.tables import connect
from axiom_dagster.pipeline.batching import plan_tick
from axiom_dagster.pipeline.run import run_batch

from tests.helpers import land_folder, make_config, retagged, small_archive
from tests.realworld.damage import DAMAGES


def _run_all(config, store, cursor=0):
    plan = plan_tick(store, config.pipeline, cursor, datetime.now(timezone.utc))
    for batch in plan.new_batches:
        run_batch(config, store, batch.id, f"run-{batch.id}")
    return plan.cursor


def _routed(config) -> dict[str, bytes]:
    root = Path(config.destination_path(config.destinations[0]))
    return {p.name: p.read_bytes() for p in root.rglob("*.dcm")}


def test_identical_resend_is_a_noop_and_lands_no_second_file(tmp_path, store):
    config = make_config(tmp_path, store.url)
    small_archive(tmp_path / "in", studies=1, series=1, instances=3)
    land_folder(config, store, tmp_path / "in")
    cursor = _run_all(config, store)
    land_folder(config, store, tmp_path / "in")  # the modality sends the study again
    _run_all(config, store, cursor)

    rows = store.ledger_after(0, 100)
    assert len(rows) == 6 and len({r.path for r in rows}) == 3  # identical data sets share a file
    assert all(r.sha256 and r.original_path for r in rows)
    decisions = [d["decision"] for d in store.arrival_decisions()]
    assert decisions.count("winner") == 3 and decisions.count("duplicate") == 3
    assert {d["attempts"] for d in store.deliveries_for([r.id for r in rows])} == {1}
    assert store.exceptions() == []


def test_damaged_resend_in_same_batch_keeps_the_good_copy(tmp_path, store):
    config = make_config(tmp_path, store.url)
    good = small_archive(tmp_path / "in", studies=1, series=1, instances=3)
    land_folder(config, store, tmp_path / "in")
    damaged = tmp_path / "resend" / "damaged.dcm"
    damaged.parent.mkdir()
    damaged.write_bytes(DAMAGES["modality_vr_xx"](good[0].read_bytes(), None))
    land_folder(config, store, tmp_path / "resend")
    _run_all(config, store)

    # The damaged (latest) arrival is quarantined, the good one routed byte for byte.
    (failure,) = store.exceptions()
    assert failure["stage"] == "validate"
    assert good[0].read_bytes() in _routed(config).values()
    by_decision = {d["decision"]: d for d in store.arrival_decisions(failure["sop_uid"])}
    assert set(by_decision) == {"failed", "winner"}
    # Both arrivals stay in the landing zone, under their own names.
    rows = [r for r in store.ledger_after(0, 100) if r.sop_uid == failure["sop_uid"]]
    assert len({r.path for r in rows}) == 2 and all(Path(r.path).exists() for r in rows)


def test_corrected_resend_in_a_later_batch_wins(tmp_path, store):
    config = make_config(tmp_path, store.url)
    first = small_archive(tmp_path / "in", studies=1, series=1, instances=2)
    land_folder(config, store, tmp_path / "in")
    cursor = _run_all(config, store)
    corrected = retagged(first[0], tmp_path / "fix" / "a.dcm", StudyDescription="CORRECTED")
    land_folder(config, store, tmp_path / "fix")
    _run_all(config, store, cursor)

    assert corrected.read_bytes() in _routed(config).values()
    con = connect(config.catalog_path)
    assert con.execute("SELECT study_description FROM instances ORDER BY ledger_id DESC LIMIT 1").fetchone()[0] == "CORRECTED"
    assert con.execute("SELECT count(*) FROM instances").fetchone()[0] == 2
    rows = store.ledger_after(0, 100)
    assert len({r.path for r in rows}) == 3 and all(Path(r.path).exists() for r in rows)


def test_first_policy_keeps_the_earlier_winner(tmp_path, store):
    config = make_config(tmp_path, store.url, arrival_winner="first")
    first = small_archive(tmp_path / "in", studies=1, series=1, instances=2)
    land_folder(config, store, tmp_path / "in")
    cursor = _run_all(config, store)
    retagged(first[0], tmp_path / "fix" / "a.dcm", StudyDescription="CORRECTED")
    land_folder(config, store, tmp_path / "fix")
    _run_all(config, store, cursor)
    assert [d["decision"] for d in store.arrival_decisions()][-1] == "superseded"
    assert first[0].read_bytes() in _routed(config).values()
