"""End to end: land a synthetic archive with damaged files, let the sensor batch it, run the
pipeline job in process, and check routed files, catalog rows, quarantine and re-runs."""
import hashlib
import json
from pathlib import Path

from dagster import DagsterInstance, build_sensor_context
from pydicom import dcmread

from axiom_dagster.catalog.tables import connect
from axiom_dagster.definitions import defs
from resources import AxiomResource
from sensors.landing import landing_sensor

from tests.helpers import make_config, write_config_file
from tests.helpers import land_folder, retagged, small_archive, truncated_copy


def _digest_tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*.dcm")}


def _run(job, instance, request):
    result = job.execute_in_process(
        run_config=request.run_config, instance=instance, partition_key=request.partition_key
    )
    assert result.success
    return result


def test_archive_routed_cataloged_with_quarantine_and_idempotent_rerun(tmp_path, store_url, monkeypatch):
    config = make_config(tmp_path, store_url)
    config_file = write_config_file(config, tmp_path / "axiom.yaml")
    # The project's own Definitions read $AXIOM_CONFIG, as a deployment would.
    monkeypatch.setenv("AXIOM_CONFIG", str(config_file))
    resource = AxiomResource(config_path=str(config_file))
    inputs = small_archive(tmp_path / "in", studies=4, series=2, instances=10)  # 80: both workers used
    corrupt = truncated_copy(
        retagged(inputs[0], tmp_path / "tmp" / "x.dcm", SOPInstanceUID="1.2.826.0.1.3680043.8.498.999"),
        tmp_path / "in" / "corrupt.dcm",
    )
    (tmp_path / "in" / "readme.txt").write_text("this is not DICOM")
    report = land_folder(config, resource.store, tmp_path / "in")
    # The cut file is refused at landing (its data set does not parse to its end).
    assert report.landed == 80 and len(report.rejected) == 2

    with build_sensor_context(resources={"axiom": resource}) as ctx:
        tick = landing_sensor(ctx)
    assert len(tick.run_requests) == 1
    (request,) = tick.run_requests

    instance = DagsterInstance.ephemeral()
    job = defs.resolve_job_def("study_pipeline_job")
    result = _run(job, instance, request)

    # Every valid input is routed, byte for byte, under the configured path template.
    routed_root = config.destination_path(config.destinations[0])
    for src in inputs:
        ds = dcmread(src, stop_before_pixels=True)
        routed = routed_root / ds.PatientID / ds.StudyInstanceUID / ds.SeriesInstanceUID / f"{ds.SOPInstanceUID}.dcm"
        assert routed.read_bytes() == src.read_bytes()
    assert len(list(routed_root.rglob("*.dcm"))) == len(inputs)

    # The catalog has one row per routed instance; the damaged file is not in it.
    con = connect(config.catalog_path)
    assert con.execute("SELECT count(*) FROM instances").fetchone()[0] == len(inputs)
    assert con.execute("SELECT count(DISTINCT study_instance_uid) FROM studies").fetchone()[0] == 4
    assert con.execute("SELECT count(*) FROM instances WHERE sop_instance_uid = '1.2.826.0.1.3680043.8.498.999'").fetchone()[0] == 0

    # Both damaged inputs are quarantined with their reasons.
    failures = resource.store.exceptions()
    assert {e["stage"] for e in failures} == {"landing"}
    reasons = " | ".join(e["reason"] for e in failures)
    assert "not a DICOM Part 10 file" in reasons and "does not parse to its end" in reasons
    (cut,) = [e for e in failures if "parse to its end" in e["reason"]]
    kept = Path(cut["quarantine_path"])
    assert kept.read_bytes() == corrupt.read_bytes()
    assert json.loads(kept.with_name(kept.name + ".reason.json").read_text())["stage"] == "landing"

    # Per-batch metadata reached Dagster.
    mats = result.asset_materializations_for_node("study_pipeline")
    routed_meta = next(m for m in mats if m.asset_key.path == ["routed_instances"]).metadata
    assert routed_meta["deliveries"].value == len(inputs) and routed_meta["failures"].value == 0
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    assert checks == {"sop_instance_uid_unique": True, "required_columns_present": True,
                      "every_arrival_accounted_for": True, "no_instance_quarantined": True,
                      # the catalog tables of the day, checked over the whole day
                      "sop_instance_uid_unique_in_catalog": True, "required_columns_non_null": True,
                      "series_counts_consistent": True, "study_counts_consistent": True}
    validated_meta = next(m for m in mats if m.asset_key.path == ["validated_instances"]).metadata
    assert validated_meta["quarantined"].value == 0 and "quarantine_folder" in validated_meta

    # Re-running the same batch changes nothing: same files, same rows, same exceptions.
    before = _digest_tree(routed_root)
    _run(job, instance, request)
    assert _digest_tree(routed_root) == before
    assert connect(config.catalog_path).execute("SELECT count(*) FROM instances_all").fetchone()[0] == len(inputs)
    assert len(resource.store.exceptions()) == 2
    deliveries = resource.store.deliveries_for([r.id for r in resource.store.ledger_after(0, 1000)])
    assert len(deliveries) == len(inputs) and {d["attempts"] for d in deliveries} == {2}
    counts = resource.store.study_counts()
    assert counts == {"done": 4}
