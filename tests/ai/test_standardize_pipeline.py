"""AI standardization in pipeline runs, through the real OpenAI and Vertex AI clients and a
local stand-in server: one call per batch of distinct values, none once cached, corrections
win, a prompt change asks again, and the cost guard keeps values and reports them."""
from pathlib import Path

import pytest
import yaml
from dagster import DagsterInstance, build_sensor_context
from pydicom import dcmread

import pyarrow as pa
import pyarrow.parquet as pq
from dagster import materialize

from assets.ai_cache import ai_cache_export
from axiom_dagster.ai.cache import AICache
from axiom_dagster.ai.standardize import resolve_batch
from axiom_dagster.cli import main as axiom_main
from axiom_dagster.config.models import load_config
from axiom_dagster.crosswalks.misses import open_misses
from axiom_dagster.definitions import defs
from resources import AxiomResource
from sensors.landing import landing_sensor
from tests.ai.server import ModelServer
from tests.helpers import land_folder, make_config, new_copies, small_archive

VOCAB = ["Head CT", "Chest CT", "Knee MR"]
VARIANTS = ["CT HEAD WO", "ct head w contrast", "CHEST CT LOW DOSE", "Knee MR left", "abd ultrasound"]


@pytest.fixture
def server():
    s = ModelServer().start()
    yield s
    s.stop()


def archive(folder: Path, studies: int, per_study: int, tag: str = "") -> dict[str, str]:
    """`studies` studies with distinct StudyDescriptions; returns SOPInstanceUID -> description."""
    out = {}
    for path in small_archive(folder, studies=studies, series=1, instances=per_study):
        ds = dcmread(path)
        n = sorted_index(folder, ds.StudyInstanceUID)
        ds.StudyDescription = f"{VARIANTS[n % len(VARIANTS)]} {tag}{n:02d}"
        ds.save_as(path)
        out[ds.SOPInstanceUID] = ds.StudyDescription
    return out


_STUDY_INDEX: dict[tuple, int] = {}


def sorted_index(folder: Path, study_uid: str) -> int:
    return _STUDY_INDEX.setdefault((str(folder), study_uid), len([k for k in _STUDY_INDEX if k[0] == str(folder)]))


def expected(description: str) -> str:
    low = description.lower()
    return next((t for t in VOCAB if all(w in low for w in t.lower().split())), description)


def write_config(tmp_path, store_url, server, provider: str, **guard) -> Path:
    data = make_config(tmp_path, store_url).model_dump(mode="json", exclude_defaults=True)
    providers = {
        "openai": {"type": "openai", "model": "gpt-local", "base_url": server.url + "/v1", "api_key_env": "AXIOM_TEST_OPENAI_KEY"},
        "vertex": {"type": "vertex", "model": "gemini-local", "project": "proj", "api_endpoint": server.url, "credentials": "anonymous"},
    }
    data["ai"] = {"providers": {"llm": providers[provider]}, "vocabularies": {"exams": VOCAB},
                  "cost_guard": guard or {}, "batch_size": 25}
    data["rulesets"] = [{"name": "standardize", "rules": [{"name": "study-description", "actions": [
        {"action": "standardize", "attribute": "StudyDescription", "vocabulary": "exams", "provider": "llm"}]}]}]
    data["default_destinations"] = ["*"]
    path = tmp_path / "axiom.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def run_pipeline(resource, folder: Path):
    land_folder(resource.config, resource.store, folder)
    with build_sensor_context(resources={"axiom": resource}) as ctx:
        requests = landing_sensor(ctx).run_requests
    for request in requests:
        result = defs.resolve_job_def("study_pipeline_job").execute_in_process(
            run_config=request.run_config, instance=DagsterInstance.ephemeral(),
            partition_key=request.partition_key, resources={"axiom": resource},
        )
        assert result.success


def routed(tmp_path) -> dict[str, str]:
    return {ds.SOPInstanceUID: ds.StudyDescription for ds in map(dcmread, (tmp_path / "routed").rglob("*.dcm"))}


@pytest.mark.slow  # pipeline runs end to end
@pytest.mark.parametrize("provider", ["openai", "vertex"])
def test_distinct_values_asked_once_then_cached(tmp_path, store_url, server, provider, monkeypatch):
    monkeypatch.setenv("AXIOM_TEST_OPENAI_KEY", "sk-local")
    originals = archive(tmp_path / "in", studies=40, per_study=5)
    assert len(set(originals.values())) == 40
    config_file = write_config(tmp_path, store_url, server, provider)
    resource = AxiomResource(config_path=str(config_file))

    run_pipeline(resource, tmp_path / "in")
    assert len(server.requests) == 2  # 40 distinct values in batches of 25
    out = routed(tmp_path)
    assert len(out) == 200
    assert out == {uid: expected(d) for uid, d in originals.items()}
    assert any(v == "Head CT" for v in out.values()) and any(v.startswith("abd ultrasound") for v in out.values())

    # The same values again on new instances: answered from the cache, no model call.
    (tmp_path / "routed").rename(tmp_path / "routed-1")
    renamed = new_copies(tmp_path / "in", tmp_path / "in-2")
    run_pipeline(resource, tmp_path / "in-2")
    assert len(server.requests) == 2
    assert routed(tmp_path) == {renamed[uid]: value for uid, value in out.items()}


def test_review_correction_wins_and_prompt_change_asks_again(tmp_path, store_url, server, monkeypatch):
    monkeypatch.setenv("AXIOM_TEST_OPENAI_KEY", "sk-local")
    originals = archive(tmp_path / "in", studies=5, per_study=2)
    config_file = write_config(tmp_path, store_url, server, "openai")
    config = load_config(config_file)
    paths = sorted(str(p) for p in (tmp_path / "in").rglob("*.dcm"))
    report = resolve_batch(config, paths)
    assert (report.calls, report.distinct_values, report.answered) == (1, 5, 5)

    cache = AICache(AxiomResource(config_path=str(config_file)).store.engine)
    abd = next(e for e in cache.entries() if e["input_value"].startswith("abd"))
    assert abd["output_value"] is None
    assert axiom_main(["--config", str(config_file), "ai", "review", "--set", str(abd["id"]), "Abdomen US"]) == 0
    resource = AxiomResource(config_path=str(config_file))
    run_pipeline(resource, tmp_path / "in")
    assert len(server.requests) == 1  # everything cached
    out = routed(tmp_path)
    assert {out[uid] for uid, d in originals.items() if d.startswith("abd")} == {"Abdomen US"}

    # New instructions make a new prompt version: asked again; the correction still wins.
    data = yaml.safe_load(config_file.read_text())
    data["rulesets"][0]["rules"][0]["actions"][0]["prompt"] = "Prefer the body part."
    config_file.write_text(yaml.safe_dump(data))
    again = resolve_batch(load_config(config_file), paths)
    assert again.calls == 1 and again.cached == 1  # only the corrected value needs no answer
    assert len({e["prompt_version"] for e in cache.entries()}) == 2

    # The exported cache, edited by a person and imported, wins too.
    resource = AxiomResource(config_path=str(config_file))
    assert materialize([ai_cache_export], resources={"axiom": resource}, instance=DagsterInstance.ephemeral()).success
    export = tmp_path / "var" / "crosswalks" / "_reports" / "ai_standardization_cache.parquet"
    rows = pq.read_table(export).to_pylist()
    assert len(rows) == 9 and sum(r["reviewed_value"] is not None for r in rows) == 1  # 5 + 4 asked again
    head = next(r for r in rows if r["input_value"].startswith("CT HEAD") and r["prompt_version"] == abd["prompt_version"])
    head["reviewed_value"] = "Head CT (reviewed)"
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "edited.parquet")
    assert axiom_main(["--config", str(config_file), "ai", "review", "--import", str(tmp_path / "edited.parquet")]) == 0
    assert resolve_batch(load_config(config_file), paths).calls == 0
    from axiom_dagster.ai.standardize import _ANSWERS
    assert any(a.get(head["input_value"]) == "Head CT (reviewed)" for a in _ANSWERS.values())


def test_cost_guard_keeps_values_and_reports_misses(tmp_path, store_url, server, monkeypatch):
    monkeypatch.setenv("AXIOM_TEST_OPENAI_KEY", "sk-local")
    originals = archive(tmp_path / "in", studies=40, per_study=1)
    config_file = write_config(tmp_path, store_url, server, "openai", max_calls_per_run=1)
    resource = AxiomResource(config_path=str(config_file))
    run_pipeline(resource, tmp_path / "in")
    assert len(server.requests) == 1
    out = routed(tmp_path)
    asked = sorted(set(originals.values()))[:25]  # the first batch got answers
    for uid, d in originals.items():
        assert out[uid] == (expected(d) if d in asked else d)
    misses = open_misses(resource.store.engine, "ai")
    assert sorted(m["key_text"] for m in misses) == sorted(set(originals.values()))[25:]
    assert {m["reason"] for m in misses} == {"cost guard: max_calls_per_run reached"}
    assert {m["name"] for m in misses} == {"exams:StudyDescription"}


def test_daily_token_guard_counts_earlier_runs(tmp_path, store_url, server, monkeypatch):
    monkeypatch.setenv("AXIOM_TEST_OPENAI_KEY", "sk-local")
    archive(tmp_path / "a", studies=30, per_study=1)
    config = load_config(write_config(tmp_path, store_url, server, "openai", max_tokens_per_day=200))
    first = resolve_batch(config, sorted(str(p) for p in (tmp_path / "a").rglob("*.dcm")))
    # 120 tokens per call: the second call of the first run is still under 200, the third is not.
    assert first.calls == 2 and first.stopped_by is None
    archive(tmp_path / "b", studies=2, per_study=1, tag="b")
    second = resolve_batch(config, sorted(str(p) for p in (tmp_path / "b").rglob("*.dcm")))
    assert second.calls == 0 and second.stopped_by == "cost guard: max_tokens_per_day reached"
