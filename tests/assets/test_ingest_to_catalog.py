"""The whole path: DCMTK storescu → realtime C-STORE SCP → ledger → landing sensor →
study pipeline → routed files and catalog rows, with association metadata carried through,
on SQLite and on PostgreSQL."""
import shutil
import subprocess

import pytest
from dagster import DagsterInstance, build_sensor_context
from pydicom import dcmread

import httpx

from axiom_dagster.store.apikeys import create_key
from axiom_dagster.catalog.tables import connect
from axiom_dagster.definitions import defs
from axiom_dagster.synth import SynthSpec, generate_archive
from resources import AxiomResource
from sensors.landing import landing_sensor
from tests.realtime.support import DCMTK_ENV, InProcessService, dataset_bytes, make_config

pytestmark = [pytest.mark.skipif(shutil.which("/usr/bin/storescu") is None, reason="DCMTK not installed"), pytest.mark.slow]


def test_cstore_to_routed_and_cataloged(tmp_path, monkeypatch, store_url):
    config_path, config = make_config(
        tmp_path,
        state_store={"url": store_url},
        destinations=[{"name": "archive", "path": str(tmp_path / "routed")}],
        catalog={"path": str(tmp_path / "catalog")},
        pipeline={"quiet_period_seconds": 3600},
    )
    monkeypatch.setenv("AXIOM_CONFIG", str(config_path))
    sent = generate_archive(tmp_path / "src", SynthSpec(studies=2, series_per_study=2, instances_per_series=5, rows=32, columns=32))
    service = InProcessService(config)
    try:
        cmd = ["/usr/bin/storescu", "-aet", "CT01", "-aec", "AXIOM", "+sd", "+r", "127.0.0.1", str(service.port()), str(tmp_path / "src")]
        done = subprocess.run(cmd, env=DCMTK_ENV, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr

        resource = AxiomResource(config_path=str(config_path))
        # The association has ended, so the studies are complete long before the quiet hour.
        with build_sensor_context(resources={"axiom": resource}) as ctx:
            (request,) = landing_sensor(ctx).run_requests
        result = defs.resolve_job_def("study_pipeline_job").execute_in_process(
            run_config=request.run_config, instance=DagsterInstance.ephemeral(), partition_key=request.partition_key
        )
        assert result.success

        # The study's status, run, deliveries and audit trail through the API.
        study_uid = dcmread(sent[0], stop_before_pixels=True).StudyInstanceUID
        key = create_key(service.store.engine, "viewer", "user")[1]
        r = httpx.get(f"{service.base_url}/api/v1/studies/{study_uid}", headers={"Authorization": f"Bearer {key}"})
        assert r.status_code == 200, r.text
        report = r.json()
        assert report["study"]["status"] == "done" and report["study"]["run_id"] == result.run_id
        assert report["study"]["partition"] == request.partition_key
        assert report["deliveries"] == [{"destination": "archive", "status": "confirmed", "instances": 10, "max_attempts": 1}]
        (audit,) = report["audit"]
        assert audit["action"] == "study_processed" and audit["detail"]["instances"] == 10
        unknown = httpx.get(f"{service.base_url}/api/v1/studies/1.2.3.4", headers={"Authorization": f"Bearer {key}"})
        assert unknown.status_code == 404
        bad = httpx.get(f"{service.base_url}/api/v1/studies/..%2Fetc", headers={"Authorization": f"Bearer {key}"})
        assert bad.status_code in (400, 404)
    finally:
        service.stop()

    for src in sent:
        ds = dcmread(src, stop_before_pixels=True)
        routed = tmp_path / "routed" / ds.PatientID / ds.StudyInstanceUID / ds.SeriesInstanceUID / f"{ds.SOPInstanceUID}.dcm"
        assert dataset_bytes(routed) == dataset_bytes(src)
    con = connect(tmp_path / "catalog")
    assert con.execute("SELECT count(*), min(source), min(calling_ae) FROM instances").fetchone() == (len(sent), "main", "CT01")
    assert resource.store.study_counts() == {"done": 2}
