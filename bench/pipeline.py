"""Pipeline throughput against the cost floor, measured in the same run on the same files.

    python bench/pipeline.py [--instances 2000] [--rows 256]

Floor: a plain single-process pydicom loop that reads each landed file and writes it out.
Pipeline: the landing sensor's tick plus the study_pipeline Dagster job run in process
(validate, morph, route, catalog, state store), with its in-run process pool.
Three pipeline variants: no rules (unchanged instances are copied byte for byte), no rules
into a folder with `link_unchanged` (hard links to the landed files), and one configured rule
that sets an attribute (every instance is re-encoded, as with real rules).
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

from pydicom import dcmread

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from axiom_dagster.ingest.arrival import ArrivalMeta  # noqa: E402
from axiom_dagster.config.models import AxiomConfig, FilesystemDestination, PipelineConfig  # noqa: E402
from axiom_dagster.ingest.landing import LandingZone  # noqa: E402
from axiom_dagster.store.state import StateStore  # noqa: E402
from axiom_dagster.synth import SynthSpec, generate_archive  # noqa: E402


# One rule that changes every instance, so each is re-encoded (as real rule sets do).
SET_INSTITUTION = [
    {
        "name": "bench",
        "rules": [
            {
                "name": "set-institution",
                "destinations": ["archive"],
                "actions": [{"action": "set", "attribute": "InstitutionName", "value": "Bench {Modality}"}],
            }
        ],
    }
]


def cpu_seconds() -> float:
    """User + system CPU of this process and its reaped children (the run's process pool)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def floor_loop(paths: list[Path], out: Path) -> tuple[float, float]:
    """Seconds and CPU seconds of the plain read+write loop."""
    out.mkdir(parents=True)
    started, cpu_started = time.perf_counter(), cpu_seconds()
    for i, path in enumerate(paths):
        ds = dcmread(path)
        ds.save_as(out / f"{i}.dcm")
    return time.perf_counter() - started, cpu_seconds() - cpu_started


def bench_config(work: Path, morph: str, link: bool = False, **pipeline) -> AxiomConfig:
    """The benchmark's configuration under `work`: SQLite state store, one folder destination
    (hard-linking unchanged instances with `link`), and with morph="set" the one re-encoding rule."""
    return AxiomConfig(
        landing={"path": work / "landing", "quarantine_path": work / "quarantine"},
        state_store={"url": f"sqlite:///{work / 'state.db'}"},
        catalog={"path": str(work / "catalog")},
        pipeline=PipelineConfig(quiet_period_seconds=0, **pipeline),
        destinations=[FilesystemDestination(name="archive", path=work / "routed", link_unchanged=link)],
        rulesets=SET_INSTITUTION if morph == "set" else [],
        base_dir=work,
    )


def pipeline_run(work: Path, archive: list[Path], morph: str, link: bool = False) -> tuple[float, int, float]:
    """Seconds, instances routed and CPU seconds (process tree) of one sensor tick + its runs."""
    from dagster import DagsterInstance, build_sensor_context

    from axiom_dagster.definitions import defs
    from resources import AxiomResource
    from sensors.landing import landing_sensor

    config = bench_config(work, morph, link, batch_max_studies=1000)
    import yaml

    work.mkdir(parents=True, exist_ok=True)
    config_file = work / "axiom.yaml"
    config_file.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    os.environ["AXIOM_CONFIG"] = str(config_file)
    store = StateStore(config.state_store_url)
    store.migrate()
    LandingZone.for_config(config, store).import_files(archive, ArrivalMeta(source="bench"))

    resource = AxiomResource(config_path=str(config_file))
    job = defs.resolve_job_def("study_pipeline_job")
    instance = DagsterInstance.ephemeral()
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    started, cpu_started = time.perf_counter(), cpu_seconds()
    with build_sensor_context(resources={"axiom": resource}) as ctx:
        tick = landing_sensor(ctx)
    for request in tick.run_requests:
        result = job.execute_in_process(
            run_config={**request.run_config, **quiet}, instance=instance, partition_key=request.partition_key
        )
        assert result.success
        routed_meta = next(
            m.metadata for m in result.asset_materializations_for_node("study_pipeline")
            if m.asset_key.path == ["routed_instances"]
        )
        phases = {k: v.value for k, v in routed_meta.items() if k.startswith("seconds")}
        print(f"   {morph}: {phases}")
    seconds, cpu = time.perf_counter() - started, cpu_seconds() - cpu_started
    routed = sum(1 for _ in (work / "routed").rglob("*.dcm"))
    return seconds, routed, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--instances", type=int, default=2000)
    parser.add_argument("--rows", type=int, default=256)
    args = parser.parse_args()
    per_series = 20
    studies = max(1, args.instances // (per_series * 2))
    spec = SynthSpec(studies, 2, per_series, args.rows, args.rows, seed=11)

    with tempfile.TemporaryDirectory(prefix="axiom-bench-") as tmp:
        tmp = Path(tmp)
        archive = generate_archive(tmp / "archive", spec)
        mb = sum(p.stat().st_size for p in archive) / 1e6
        print(f"{len(archive)} instances, {mb:.0f} MB ({mb * 1e3 / len(archive):.0f} KB each), {os.cpu_count()} cores")

        results = {}  # variant -> (seconds, CPU seconds)
        # Alternate so that disk-cache drift hits both sides alike.
        results["floor"] = floor_loop(archive, tmp / "floor1")
        secs, routed, cpu = pipeline_run(tmp / "p1", archive, "none")
        assert routed == len(archive), routed
        results["pipeline, no rules (byte copy)"] = (secs, cpu)
        shutil.rmtree(tmp / "floor1")
        results["floor"] = min(results["floor"], floor_loop(archive, tmp / "floor2"))
        secs, routed, cpu = pipeline_run(tmp / "p2", archive, "set")
        assert routed == len(archive), routed
        results["pipeline, 1 set rule (re-encode)"] = (secs, cpu)
        secs, routed, cpu = pipeline_run(tmp / "p3", archive, "none", link=True)
        assert routed == len(archive), routed
        results["pipeline, no rules (hard links)"] = (secs, cpu)

        floor_rate = len(archive) / results["floor"][0]
        # CPU per instance counts every process of the run (the pool too): on a shared machine
        # it moves less than seconds do.
        print(f"{'variant':34} {'seconds':>8} {'inst/s':>8} {'ratio to floor':>15} {'CPU ms/inst':>12}")
        for name, (secs, cpu) in results.items():
            rate = len(archive) / secs
            print(f"{name:34} {secs:8.2f} {rate:8.0f} {rate / floor_rate:15.2f} {cpu * 1e3 / len(archive):12.2f}")
        print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        print("target: pipeline >= 0.50 of the floor (framework overhead at most 2x)")


if __name__ == "__main__":
    main()
