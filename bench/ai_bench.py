"""AI standardization in pipeline runs: model calls and the cost of the per-run pass.

    python bench/ai_bench.py [--instances 2000] [--descriptions 40]

A synthetic archive whose studies carry `--descriptions` distinct StudyDescriptions goes
through the landing sensor and the study_pipeline job twice (the second time the same content as new instances), with
a standardize rule answered by the local stand-in model server (OpenAI chat-completions
protocol, the real openai client). Peers in the same run: the same archive and pipeline with
a plain `set` rule on the same attribute (every instance re-encoded, no AI), and with no rules. Targets: at most `--descriptions` model calls the first time, 0 the second.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import yaml
from pydicom import dcmread

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from axiom_dagster.synth import SynthSpec, generate_archive  # noqa: E402
from tests.ai.server import ModelServer  # noqa: E402
from tests.helpers import new_copies  # noqa: E402

VARIANTS = ["CT HEAD WO", "ct head w contrast", "CHEST CT LOW DOSE", "Knee MR left", "abd ultrasound"]


def make_archive(folder: Path, instances: int, descriptions: int) -> list[Path]:
    per_study = max(1, instances // descriptions)
    paths = generate_archive(folder, SynthSpec(descriptions, 1, per_study, rows=64, columns=64, seed=7))
    studies: dict[str, int] = {}
    for path in paths:
        ds = dcmread(path)
        n = studies.setdefault(ds.StudyInstanceUID, len(studies))
        ds.StudyDescription = f"{VARIANTS[n % len(VARIANTS)]} {n:02d}"
        ds.save_as(path)
    return paths


def run(work: Path, archives: list[Path], server: ModelServer | None, set_rule: bool = False) -> list[dict]:
    from dagster import DagsterInstance, build_sensor_context

    from axiom_dagster.definitions import defs
    from axiom_dagster.ingest.arrival import ArrivalMeta
    from axiom_dagster.ingest.importer import import_files, iter_files
    from axiom_dagster.ingest.landing import LandingZone
    from resources import AxiomResource
    from sensors.landing import landing_sensor

    work.mkdir(parents=True)
    data = {
        "landing": {"path": str(work / "landing"), "quarantine_path": str(work / "quarantine")},
        "state_store": {"url": f"sqlite:///{work / 'state.db'}"},
        "catalog": {"path": str(work / "catalog")},
        "pipeline": {"quiet_period_seconds": 0, "batch_max_studies": 1000},
        "destinations": [{"name": "archive", "path": str(work / "routed")}],
    }
    if server is not None:
        data["ai"] = {"providers": {"llm": {"type": "openai", "model": "local", "base_url": server.url + "/v1",
                                            "api_key_env": "AXIOM_BENCH_KEY"}},
                      "vocabularies": {"exams": ["Head CT", "Chest CT", "Knee MR"]}}
        data["rulesets"] = [{"name": "std", "rules": [{"name": "desc", "destinations": ["archive"], "actions": [
            {"action": "standardize", "attribute": "StudyDescription", "vocabulary": "exams", "provider": "llm"}]}]}]
    if set_rule:  # the fair peer: every instance re-encoded, as standardized ones are
        data["rulesets"] = [{"name": "set", "rules": [{"name": "desc", "destinations": ["archive"], "actions": [
            {"action": "set", "attribute": "StudyDescription", "value": "Head CT"}]}]}]
    config_file = work / "axiom.yaml"
    config_file.write_text(yaml.safe_dump(data))
    resource = AxiomResource(config_path=str(config_file))
    job = defs.resolve_job_def("study_pipeline_job")
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    out = []
    for archive in archives:
        zone = LandingZone.for_config(resource.config, resource.store)
        landed = import_files(zone, iter_files(archive), ArrivalMeta(source="bench")).landed
        calls_before = len(server.requests) if server else 0
        started = time.perf_counter()
        with build_sensor_context(resources={"axiom": resource}) as ctx:
            requests = landing_sensor(ctx).run_requests
        ai_seconds = 0.0
        for request in requests:
            result = job.execute_in_process(run_config={**request.run_config, **quiet}, instance=DagsterInstance.ephemeral(),
                                            partition_key=request.partition_key, resources={"axiom": resource})
            assert result.success
            meta = next(m.metadata for m in result.asset_materializations_for_node("study_pipeline")
                        if m.asset_key.path == ["morphed_instances"])
            ai_seconds += meta["ai_seconds"].value if "ai_seconds" in meta else 0.0
        out.append({"seconds": time.perf_counter() - started, "ai_seconds": ai_seconds, "landed": landed,
                    "calls": (len(server.requests) - calls_before) if server else 0})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--instances", type=int, default=2000)
    parser.add_argument("--descriptions", type=int, default=40)
    args = parser.parse_args()
    os.environ["AXIOM_BENCH_KEY"] = "sk-local"
    root = Path(tempfile.mkdtemp(prefix="axiom-ai-bench-"))
    paths = make_archive(root / "archive", args.instances, args.descriptions)
    # The second run gets the same content as new instances: a re-send of identical bytes
    # is a no-op by design (#8) and would make "0 calls" trivially true.
    new_copies(root / "archive", root / "again")
    archives = [root / "archive", root / "again"]
    server = ModelServer().start()
    try:
        with_ai = run(root / "ai", archives, server)
    finally:
        server.stop()
    peer = run(root / "plain", archives, None)
    setp = run(root / "set", archives, None, set_rule=True)
    routed = [dcmread(p, stop_before_pixels=True).StudyDescription for p in (root / "ai" / "routed").rglob("*.dcm")]
    print(f"{len(paths)} instances, {args.descriptions} distinct StudyDescriptions; standardized values routed: "
          f"{sum(1 for d in routed if d in ('Head CT', 'Chest CT', 'Knee MR'))}/{len(routed)}")
    for i, (a, p, q) in enumerate(zip(with_ai, peer, setp), 1):
        print(f"run {i} ({a['landed']} instances landed): model calls {a['calls']} (target {'<= ' + str(args.descriptions) if i == 1 else '0'}); "
              f"AI pass {a['ai_seconds']:.2f} s; run {a['seconds']:.2f} s vs {q['seconds']:.2f} s with a plain set rule "
              f"(ratio {a['seconds'] / q['seconds']:.2f}) and {p['seconds']:.2f} s without rules")


if __name__ == "__main__":
    main()
