"""The headless demo: synthesize an archive, land it, then drive the same landing sensor
and study pipeline job that the Dagster daemon would, and print a catalog summary."""
from __future__ import annotations

import os
import time
from pathlib import Path

from axiom_dagster.ingest.arrival import ArrivalMeta
from axiom_dagster.catalog.tables import connect
from axiom_dagster.config.models import AxiomConfig
from axiom_dagster.ingest.importer import iter_files
from axiom_dagster.ingest.landing import LandingZone
from axiom_dagster.store.state import StateStore
from axiom_dagster.synth import SynthSpec, generate_archive


def run_demo(config: AxiomConfig, config_path: str | None, *, studies: int, series: int, instances: int) -> int:
    started = time.perf_counter()
    spec = SynthSpec(studies=studies, series_per_study=series, instances_per_series=instances, seed=7)
    archive = config.landing_path.parent / "demo-archive"
    paths = _archive(archive, spec)
    print(f"1. synthetic archive: {len(paths)} instances of {spec.studies} studies in {archive}")

    store = StateStore(config.state_store_url)
    store.migrate()
    report = LandingZone.for_config(config, store).import_files(
        paths, ArrivalMeta(source="demo-archive")
    )
    print(f"2. landed {report.landed} instances ({report.bytes / 1e6:.0f} MB) into {config.landing_path}")

    runs, cursor = run_pending(config_path, lambda line: print(f"3. {line}"))
    print(f"   {runs} pipeline runs; ledger cursor now {cursor}")

    con = connect(config.catalog_path)
    print("4. catalog summary (axiom sql):")
    con.sql(
        "SELECT modality, count(DISTINCT study_instance_uid) AS studies, count(*) AS instances, "
        "round(sum(file_size) / 1e6, 1) AS mb FROM instances GROUP BY modality ORDER BY instances DESC"
    ).show()
    print(f"   study status: {store.study_counts()}")
    print(f"demo finished in {time.perf_counter() - started:.1f}s")
    return 0


def run_pending(config_path: str | None, say=print, *, wait: bool = False, poll_seconds: float = 5.0) -> tuple[int, str | None]:
    """Drive the landing sensor and the study pipeline job headless, exactly as the Dagster
    daemon would, until no run is requested (`axiom run`, the demo). With `wait`, keep going
    until every landed study is done or failed (quiet periods, retries of failed batches).
    Returns (runs, ledger cursor)."""
    from dagster import DagsterInstance

    from resources import AxiomResource

    if config_path:
        # The job's AxiomResource reads $AXIOM_CONFIG: point it at the same file as the sensor.
        os.environ["AXIOM_CONFIG"] = str(Path(config_path).resolve())
    instance = DagsterInstance.get() if os.environ.get("DAGSTER_HOME") else DagsterInstance.ephemeral()
    resource = AxiomResource(config_path=config_path or "")

    def on_run(request, run):
        status = "ok" if run.success else "FAILED"
        say(f"run {run.run_id[:8]} for {request.run_key} (partition {request.partition_key}): {status}")

    return run_landed_batches(instance, resource, on_run, wait=wait, poll_seconds=poll_seconds)


def run_landed_batches(instance, resource, on_run=lambda request, run: None, *, wait: bool = False,
                       poll_seconds: float = 5.0) -> tuple[int, str | None]:
    """Drive the landing sensor and study_pipeline_job in process until no batch is left
    (what the daemon would do); the cursor is kept in the instance between calls."""
    from dagster import build_sensor_context

    from axiom_dagster.definitions import defs
    from sensors.landing import landing_sensor

    job = defs.resolve_job_def("study_pipeline_job")
    cursor = _saved_cursor(instance)
    runs = 0
    while True:
        with build_sensor_context(instance=instance, cursor=cursor, resources={"axiom": resource}) as ctx:
            result = landing_sensor(ctx)
        cursor = result.cursor
        _save_cursor(instance, cursor)
        for request in result.run_requests:
            run = job.execute_in_process(
                run_config={**request.run_config, **_QUIET_LOGS}, instance=instance, raise_on_error=False,
                partition_key=request.partition_key, tags={**request.tags, "dagster/run_key": request.run_key},
            )
            runs += 1
            on_run(request, run)
        if result.run_requests:
            continue
        if not wait or not _pending(resource.store):
            return runs, cursor
        time.sleep(poll_seconds)


def _pending(store) -> bool:
    """Studies still to be batched or processed, or batches still to run."""
    summary = store.status_summary()
    studies = summary["studies"]
    batches = summary["batches"]
    return any(studies.get(s) for s in ("receiving", "queued", "processing")) or any(
        batches.get(s) for s in ("requested", "running", "retry_wait"))


def _archive(folder: Path, spec: SynthSpec) -> list[Path]:
    marker = folder / ".spec"
    if marker.exists() and marker.read_text() == repr(spec):
        return list(iter_files(folder))
    paths = generate_archive(folder, spec)
    marker.write_text(repr(spec))
    return paths


# The demo prints its own summary; Dagster's per-event console lines would drown it.
_QUIET_LOGS = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
_CURSOR_KEY = "axiom_demo_landing_cursor"


def _saved_cursor(instance) -> str | None:
    return instance.run_storage.get_cursor_values({_CURSOR_KEY}).get(_CURSOR_KEY)


def _save_cursor(instance, cursor: str | None) -> None:
    if cursor is not None:
        instance.run_storage.set_cursor_values({_CURSOR_KEY: cursor})
