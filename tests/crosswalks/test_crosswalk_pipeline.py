"""A SQL crosswalk end to end: its Dagster asset snapshots a real MariaDB/PostgreSQL table
(checks, promotion, drift blocked), the study pipeline looks PatientIDs up in the promoted
snapshot, and keys the table lacks land in the missing-keys report asset."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from dagster import DagsterInstance, build_sensor_context, materialize
from pydicom import dcmread

from assets.crosswalks import crosswalk_asset, missing_keys_report
from axiom_dagster.crosswalks.misses import open_misses
from axiom_dagster.crosswalks.snapshot import SnapshotStore
from axiom_dagster.definitions import defs
from resources import AxiomResource
from sensors.landing import landing_sensor
from tests.crosswalks.conftest import create_patients
from tests.helpers import land_folder, make_config, new_copies, small_archive

ROOT = Path(__file__).resolve().parents[2]


def _config_file(tmp_path, store_url, source_url) -> Path:
    data = make_config(tmp_path, store_url).model_dump(mode="json", exclude_defaults=True)
    data["crosswalk_snapshots"] = str(tmp_path / "crosswalks")
    data["crosswalks"] = {"patients": {
        "source": {"type": "sql", "url": source_url, "table": "patients"},
        "keys": ["mrn"], "values": ["research_id"], "cron": "0 3 * * *", "max_row_drift": 0.5,
    }}
    data["rulesets"] = [{"name": "pseudonyms", "rules": [{
        "name": "research-id",
        "actions": [{"action": "crosswalk", "crosswalk": "patients", "match": {"mrn": "PatientID"},
                     "set": {"PatientID": "research_id"}, "on_miss": "keep"}],
    }]}]
    data["default_destinations"] = ["*"]
    path = tmp_path / "axiom.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _run_pipeline(resource):
    with build_sensor_context(resources={"axiom": resource}) as ctx:
        (request,) = landing_sensor(ctx).run_requests
    result = defs.resolve_job_def("study_pipeline_job").execute_in_process(
        run_config=request.run_config, instance=DagsterInstance.ephemeral(), partition_key=request.partition_key,
        resources={"axiom": resource},
    )
    assert result.success


@pytest.mark.slow  # pipeline runs end to end
def test_sql_crosswalk_refresh_lookup_and_missing_keys(tmp_path, source_db_url, postgres_url, monkeypatch):
    inputs = small_archive(tmp_path / "in", studies=3, series=1, instances=30)
    pids = [dcmread(p).PatientID for p in inputs]
    patients = sorted(set(pids))
    assert len(patients) == 2
    known, unknown = patients[:1], patients[1]
    fillers = [(f"OTHER{i}", 1, f"RO-{i}") for i in range(2)]
    create_patients(source_db_url, [(pid, 1, f"RID-{i}") for i, pid in enumerate(known)] + fillers)
    config_file = _config_file(tmp_path, postgres_url, source_db_url)
    monkeypatch.setenv("AXIOM_CONFIG", str(config_file))
    resource = AxiomResource(config_path=str(config_file))
    spec = resource.config.crosswalks["patients"]
    asset = crosswalk_asset("patients", spec)

    refreshed = materialize([asset], resources={"axiom": resource}, instance=DagsterInstance.ephemeral())
    assert refreshed.success
    evaluations = {e.check_name: e.passed for e in refreshed.get_asset_check_evaluations()}
    assert evaluations == {"keys_unique": True, "keys_not_null": True, "row_count_drift": True}
    promoted = SnapshotStore(tmp_path / "crosswalks", "patients").current()
    assert promoted["rows"] == 3

    land_folder(resource.config, resource.store, tmp_path / "in")
    _run_pipeline(resource)
    routed = [dcmread(p) for p in (tmp_path / "routed").rglob("*.dcm")]
    assert len(routed) == len(inputs)
    ids = sorted({ds.PatientID for ds in routed})
    assert ids == sorted(["RID-0", unknown])  # the unmapped patient kept its ID (on_miss keep)

    misses = open_misses(resource.store.engine, "crosswalk")
    assert [(m["name"], m["key_text"], m["count"]) for m in misses] == [("patients", unknown, pids.count(unknown))]
    report = materialize([missing_keys_report], resources={"axiom": resource}, instance=DagsterInstance.ephemeral(),
                         selection=[missing_keys_report])
    assert report.success
    table = pq.read_table(tmp_path / "crosswalks" / "_reports" / "missing_keys.parquet").to_pylist()
    assert [(r["kind"], r["name"], r["key_text"]) for r in table] == [("crosswalk", "patients", unknown)]

    # Upstream loses rows beyond max_row_drift: the check fails, the old snapshot stays.
    create_patients(source_db_url, [(f"X{i}", 1, f"R{i}") for i in range(9)] + [(known[0], 1, "RID-0")])
    drifted = materialize([asset], resources={"axiom": resource}, instance=DagsterInstance.ephemeral())
    evaluations = {e.check_name: e.passed for e in drifted.get_asset_check_evaluations()}
    assert evaluations["row_count_drift"] is False
    assert SnapshotStore(tmp_path / "crosswalks", "patients").current() == promoted

    # The operator adds the missing patient; the next promoted snapshot is used by the next
    # run in this same process (the compiled rules are keyed by the promoted snapshots).
    create_patients(source_db_url, [(known[0], 1, "RID-0"), (unknown, 1, "RID-1")] + fillers)
    assert materialize([asset], resources={"axiom": resource}, instance=DagsterInstance.ephemeral()).success
    assert SnapshotStore(tmp_path / "crosswalks", "patients").current()["rows"] == 4  # within max_row_drift
    (tmp_path / "routed").rename(tmp_path / "routed-1")
    new_copies(tmp_path / "in", tmp_path / "in-2")  # identical re-sends would be no-ops
    land_folder(resource.config, resource.store, tmp_path / "in-2")
    _run_pipeline(resource)
    assert sorted({dcmread(p).PatientID for p in (tmp_path / "routed").rglob("*.dcm")}) == ["RID-0", "RID-1"]


@pytest.mark.slow  # pipeline runs end to end
def test_code_location_puts_crosswalk_assets_upstream_of_the_pipeline(tmp_path, postgres_url):
    config_file = _config_file(tmp_path, postgres_url, "postgresql+psycopg2://postgres@127.0.0.1:5432/unused")
    code = (
        "import json\nfrom axiom_dagster.definitions import defs\ng = defs.resolve_asset_graph()\n"
        "from dagster import AssetKey\n"
        "print(json.dumps({'deps': sorted(k.to_user_string() for k in g.get(AssetKey('morphed_instances')).parent_keys),"
        " 'schedules': sorted(s.name for s in defs.schedules),"
        " 'cron': [s.cron_schedule for s in defs.schedules if s.name == 'crosswalk_patients_schedule']}))"
    )
    env = {**os.environ, "AXIOM_CONFIG": str(config_file)}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout.strip().splitlines()[-1])
    assert data["deps"] == ["crosswalks/patients", "validated_instances"]
    assert "crosswalk_patients_schedule" in data["schedules"] and data["cron"] == ["0 3 * * *"]
