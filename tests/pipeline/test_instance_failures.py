"""One bad instance never fails its batch: header values pydicom cannot convert, unknown VRs
and failing steps quarantine that instance (reason + exception row); the rest goes on."""
from datetime import datetime, timezone

from axiom_dagster.catalog.tables import connect
from axiom_dagster.pipeline.batching import plan_tick
from axiom_dagster.pipeline.run import run_batch

from tests.helpers import land_folder, make_config, small_archive
from tests.realworld.damage import damaged_copies

PIPELINE_DAMAGES = ["series_number_1e400", "patient_id_vr_xx", "modality_vr_xx", "bits_stored_vr_da",
                    "study_date_garbage", "patient_name_phi_bad_vr"]


def test_values_pydicom_cannot_convert_quarantine_one_instance(tmp_path, store):
    config = make_config(tmp_path, store.url, workers=2)
    good = small_archive(tmp_path / "in", studies=2, series=1, instances=40)
    damaged = damaged_copies(good[:6], tmp_path / "in" / "damaged", 12, kinds=PIPELINE_DAMAGES)
    report = land_folder(config, store, tmp_path / "in")
    assert report.landed == len(good) + len(damaged), report.rejected

    plan = plan_tick(store, config.pipeline, 0, datetime.now(timezone.utc))
    (batch,) = plan.new_batches
    result = run_batch(config, store, batch.id, "run-1")

    assert store.batch(batch.id).status == "done"
    catalogued = connect(config.catalog_path).execute("SELECT count(*) FROM instances_all").fetchone()[0]
    failures = store.exceptions()
    # Every arrival is accounted for: catalogued or quarantined with a reason.
    assert catalogued + len(failures) == report.landed
    assert catalogued >= len(good)
    for failure in failures:
        assert failure["reason"] and failure["ledger_id"] and failure["stage"] in ("validate", "catalog", "morph")
        assert "CANARY" not in failure["reason"]
    assert result.instances == report.landed
