"""The headless demo: synthesize an archive, land it, then drive the same landing sensor
and study pipeline job that the Dagster daemon would, and print a catalog summary."""
from __future__ import annotations

import os
import time
from pathlib import Path

from axiom_dagster.ingest.arrival import ArrivalMeta
from axiom_dagster.catalog.tables import connect
from axiom_dagster.config.models import AxiomConfig
from axiom_dagster.ingest.landing import LandingZone, iter_files
from axiom_dagster.store.state import StateStore
from axiom_dagster.synth import SynthSpec, generate_archive


def run_demo(config: AxiomConfig, config_path: str | None, *, studies: int, series: int, instances: int) -> int:
    from dagster import DagsterInstance

    from resources import AxiomResource

    started = time.perf_counter()
    spec = SynthSpec(studies=studies, series_per_study=series, instances_per_series=instances, seed=7)
    archive = config.landing_path.parent / "demo-archive"
    paths = _archive(archive, spec)
    print(f"1. synthetic archive: {len(paths)} instances of {spec.studies} studies in {archive}")

    store = StateStore(config.state_store_url)
    store.migrate()
    report = LandingZone(config.landing_path, config.quarantine_path, store).import_files(
        paths, ArrivalMeta(source="demo-archive")
    )
    print(f"2. landed {report.landed} instances ({report.bytes / 1e6:.0f} MB) into {config.landing_path}")

    if config_path:
        # The job's AxiomResource reads $AXIOM_CONFIG: point it at the same file as the sensor.
        os.environ["AXIOM_CONFIG"] = str(Path(config_path).resolve())
    instance = DagsterInstance.get() if os.environ.get("DAGSTER_HOME") else DagsterInstance.ephemeral()
    resource = AxiomResource(config_path=config_path or "")
    runs, cursor = run_landed_batches(instance, resource, lambda request, run: print(
        f"3. run {run.run_id[:8]} for {request.run_key} (partition {request.partition_key}): {'ok' if run.success else 'FAILED'}"))
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


def run_landed_batches(instance, resource, on_run=lambda request, run: None) -> tuple[int, str | None]:
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
        if not result.run_requests:
            break
        for request in result.run_requests:
            run = job.execute_in_process(
                run_config={**request.run_config, **_QUIET_LOGS}, instance=instance,
                partition_key=request.partition_key, tags={**request.tags, "dagster/run_key": request.run_key},
            )
            runs += 1
            on_run(request, run)
    _save_cursor(instance, cursor)
    return runs, cursor


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
