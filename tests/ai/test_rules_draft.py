"""`axiom rules draft`: the model's YAML is validated with the configuration schema, compiled,
run through the rule tester on sample files, and saved only when confirmed."""
import io

import pytest
import yaml

from axiom_dagster.cli import main as axiom_main
from tests.ai.server import ModelServer
from tests.helpers import make_config, retagged, small_archive

GOOD = """
rulesets:
  - name: research-routing
    mode: first_match
    rules:
      - name: ct-heads-from-ct01
        conditions:
          all:
            - {attribute: Modality, op: eq, value: CT}
            - {meta: calling_ae, op: eq, value: CT01}
        destinations: [research]
        destination_actions:
          research: [{action: deidentify, profile: research}]
"""


@pytest.fixture
def server():
    s = ModelServer().start()
    yield s
    s.stop()


def config_file(tmp_path, server):
    data = make_config(tmp_path, f"sqlite:///{tmp_path / 'state.db'}").model_dump(mode="json", exclude_defaults=True)
    data["destinations"].append({"name": "research", "path": str(tmp_path / "research")})
    data["deid_profiles"] = {"research": {}}
    data["ai"] = {"providers": {"llm": {"type": "openai", "base_url": server.url + "/v1", "api_key_env": "AXIOM_TEST_OPENAI_KEY"}}}
    path = tmp_path / "axiom.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_draft_validated_tested_and_saved_on_confirmation(tmp_path, server, monkeypatch, capsys):
    monkeypatch.setenv("AXIOM_TEST_OPENAI_KEY", "sk-local")
    server.draft_yaml = GOOD
    mr = small_archive(tmp_path / "in", studies=1, series=1, instances=1)[0]
    sample = retagged(mr, tmp_path / "ct.dcm", Modality="CT")
    cfg = config_file(tmp_path, server)
    request = "route CT heads from CT01 to research, de-identified"
    args = ["--config", cfg, "rules", "draft", request, "--sample", str(sample), "--sample", str(mr), "--calling-ae", "CT01"]

    assert axiom_main(args) == 0
    out = capsys.readouterr()
    assert "research-routing" in out.out and "rule tester on" in out.out
    tested = out.out.split("--- rule tester on ")
    assert "MATCH research-routing/ct-heads-from-ct01" in tested[1] and "destinations: research" in tested[1]
    assert "PatientIdentityRemoved" in tested[1]  # the de-identified copy's diff
    assert "Modality eq 'CT' (actual: ['MR'])" in tested[2]
    assert "not saved" in out.err
    assert request in server.requests[0]["body"]["messages"][1]["content"]

    target = tmp_path / "drafted.yaml"
    monkeypatch.setattr("sys.stdin", io.StringIO("n\n"))
    assert axiom_main(args + ["--save", str(target)]) == 1
    assert not target.exists()
    monkeypatch.setattr("sys.stdin", io.StringIO("y\n"))
    assert axiom_main(args + ["--save", str(target)]) == 0
    assert yaml.safe_load(target.read_text())["rulesets"][0]["name"] == "research-routing"


def test_draft_that_breaks_the_schema_is_rejected(tmp_path, server, monkeypatch, capsys):
    monkeypatch.setenv("AXIOM_TEST_OPENAI_KEY", "sk-local")
    server.draft_yaml = GOOD.replace("destinations: [research]", "destinations: [nowhere]")
    target = tmp_path / "drafted.yaml"
    assert axiom_main(["--config", config_file(tmp_path, server), "rules", "draft", "x", "--save", str(target), "--yes"]) == 1
    assert "unknown destination 'nowhere'" in capsys.readouterr().err
    assert not target.exists()
    server.draft_yaml = "rulesets: [{name: r, rules: [{name: a, conditions: {attribute: NoSuchKeyword, op: exists}}]}]"
    assert axiom_main(["--config", config_file(tmp_path, server), "rules", "draft", "x"]) == 1
    assert "draft rejected" in capsys.readouterr().err
