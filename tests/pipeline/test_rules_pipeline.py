"""The morph step applies configured rules end to end and routes per destination;
`axiom rules check/test` report on a configuration."""
from pathlib import Path

import yaml
from dagster import DagsterInstance, build_sensor_context
from pydicom import dcmread

from axiom_dagster.catalog.tables import connect
from axiom_dagster.cli import main as axiom_main
from axiom_dagster.definitions import defs
from resources import AxiomResource
from sensors.landing import landing_sensor

from tests.helpers import make_config
from tests.helpers import land_folder, small_archive

RULES = {
    "deid_profiles": {"research": {"retain_long_modified_dates": True, "clean_descriptors": True}},
    "default_destinations": ["clinical"],
    "rulesets": [
        {
            "name": "routing",
            "rules": [
                {
                    "name": "fix-institution",
                    "conditions": {"attribute": "InstitutionName", "op": "exists"},
                    "destinations": ["clinical", "research"],
                    "actions": [{"action": "set", "attribute": "InstitutionName", "value": "Axiom General ({Modality})"}],
                    "destination_actions": {"research": [{"action": "deidentify", "profile": "research"}]},
                }
            ],
        }
    ],
}


def _config_file(tmp_path, store_url) -> Path:
    config = make_config(tmp_path, store_url)
    data = config.model_dump(mode="json", exclude_defaults=True)
    data["destinations"] = [
        {"name": "clinical", "path": str(tmp_path / "clinical")},
        {"name": "research", "path": str(tmp_path / "research")},
    ]
    data.update(RULES)
    path = tmp_path / "axiom.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_rules_route_and_deidentify_per_destination(tmp_path, store_url, monkeypatch):
    monkeypatch.setenv("AXIOM_DEID_SECRET", "test-secret-key-0123456789")
    config_file = _config_file(tmp_path, store_url)
    monkeypatch.setenv("AXIOM_CONFIG", str(config_file))
    resource = AxiomResource(config_path=str(config_file))
    inputs = small_archive(tmp_path / "in", studies=2, series=2, instances=20)
    land_folder(resource.config, resource.store, tmp_path / "in")
    with build_sensor_context(resources={"axiom": resource}) as ctx:
        (request,) = landing_sensor(ctx).run_requests
    result = defs.resolve_job_def("study_pipeline_job").execute_in_process(
        run_config=request.run_config, instance=DagsterInstance.ephemeral(), partition_key=request.partition_key
    )
    assert result.success

    originals = {dcmread(p).SOPInstanceUID: dcmread(p) for p in inputs}
    clinical = [dcmread(p) for p in (tmp_path / "clinical").rglob("*.dcm")]
    research = [dcmread(p) for p in (tmp_path / "research").rglob("*.dcm")]
    assert len(clinical) == len(research) == len(inputs)

    for ds in clinical:
        src = originals[ds.SOPInstanceUID]
        assert ds.InstitutionName == f"Axiom General ({src.Modality})"
        assert ds.PatientName == src.PatientName and ds.PixelData == src.PixelData

    study_map = {}
    for ds in research:
        assert ds.PatientIdentityRemoved == "YES"
        assert ds.SOPInstanceUID not in originals
        assert str(ds.PatientName) not in {str(o.PatientName) for o in originals.values()}
        assert "InstitutionName" not in ds or ds.InstitutionName != "Axiom General"
        study_map.setdefault(ds.StudyInstanceUID, set()).add(ds.PatientID)
        # The research copy's path is built from de-identified values only.
    research_paths = " ".join(str(p) for p in (tmp_path / "research").rglob("*.dcm"))
    for src in originals.values():
        assert src.PatientID not in research_paths and src.StudyInstanceUID not in research_paths
    # Two studies in, two (remapped) studies out, each with one pseudonymous patient.
    assert len(study_map) == 2 and all(len(v) == 1 for v in study_map.values())

    # The audit trail names the rule that matched each study.
    for study_uid in {o.StudyInstanceUID for o in originals.values()}:
        (audit,) = resource.store.study_report(study_uid)["audit"]
        assert audit["detail"]["rules"] == ["routing/fix-institution"]
        assert audit["detail"]["destinations"] == ["clinical", "research"]

    con = connect(resource.config.catalog_path)
    assert con.execute("SELECT count(*) FROM instances WHERE list_contains(destinations, 'research')").fetchone()[0] == len(inputs)


def test_rules_check_and_test_commands(tmp_path, store_url, capsys, monkeypatch):
    monkeypatch.setenv("AXIOM_DEID_SECRET", "test-secret-key-0123456789")
    config_file = _config_file(tmp_path, store_url)
    assert axiom_main(["rules", "check", str(config_file)]) == 0
    assert "1 rulesets, 1 rules, 2 destinations" in capsys.readouterr().out

    sample = small_archive(tmp_path / "in", studies=1, series=1, instances=1)[0]
    assert axiom_main(["rules", "test", str(config_file), str(sample), "--calling-ae", "CT1"]) == 0
    out = capsys.readouterr().out
    assert "MATCH routing/fix-institution" in out
    assert "InstitutionName" in out and "research" in out

    # A broken rule is reported with the file, the line and the field.
    data = yaml.safe_load(config_file.read_text())
    data["rulesets"][0]["rules"][0]["conditions"] = {"attribute": "PatientName", "op": "regex", "value": "("}
    config_file.write_text(yaml.safe_dump(data))
    assert axiom_main(["rules", "check", str(config_file)]) == 2
    err = capsys.readouterr().err
    assert f"{config_file}:" in err and "rulesets[0].rules[0].conditions" in err
