"""The code location loads offline, `dg check defs` accepts it, and the documented
PostgreSQL instance configuration works against the local server."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from dagster import DagsterInstance, asset, materialize

ROOT = Path(__file__).resolve().parents[2]


def test_definitions_graph():
    from axiom_dagster.definitions import defs

    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    assert keys == {"arrival_ledger", "validated_instances", "morphed_instances", "routed_instances", "instance_catalog", "catalog_compaction",
                    "crosswalks/missing_keys_report", "ai/standardization_cache",
                    "catalog_instances", "catalog_series", "catalog_studies"}
    assert defs.resolve_sensor_def("landing_sensor").job_name == "study_pipeline_job"
    checks = {k.name for k in defs.resolve_asset_graph().asset_check_keys}
    assert checks == {"sop_instance_uid_unique", "required_columns_present", "rows_preserved",
                      "every_arrival_accounted_for", "no_instance_quarantined",
                      "sop_instance_uid_unique_in_catalog", "required_columns_non_null", "series_counts_consistent",
                      "study_counts_consistent"}


@pytest.mark.slow  # loads the code location in a dg subprocess
def test_dg_check_defs_passes(tmp_path):
    dg = Path(sys.executable).with_name("dg")
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path), "NO_PROXY": "*"}
    result = subprocess.run(
        [str(dg), "check", "defs"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow  # creates the whole Dagster schema in PostgreSQL
def test_postgres_instance_config(tmp_path, postgres_url, monkeypatch):
    """config/dagster-postgres.yaml, as documented, stores runs in PostgreSQL."""
    shutil.copy(ROOT / "config" / "dagster-postgres.yaml", tmp_path / "dagster.yaml")
    db = postgres_url.rsplit("/", 1)[1]
    for key, value in {
        "DAGSTER_PG_HOST": "127.0.0.1", "DAGSTER_PG_PORT": "5432", "DAGSTER_PG_DB": db,
        "DAGSTER_PG_USER": "postgres", "DAGSTER_PG_PASSWORD": "unused-with-trust-auth",
    }.items():
        monkeypatch.setenv(key, value)

    @asset
    def probe():
        return 1

    with DagsterInstance.from_config(str(tmp_path)) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        result = materialize([probe], instance=instance)
        assert result.success
        assert instance.get_run_by_id(result.run_id) is not None


def test_embedded_instance_config(tmp_path):
    """make demo/dev use DAGSTER_HOME=.dagster_home, whose dagster.yaml is the root one."""
    assert (ROOT / ".dagster_home" / "dagster.yaml").resolve() == (ROOT / "dagster.yaml").resolve()
    shutil.copy(ROOT / "dagster.yaml", tmp_path / "dagster.yaml")
    with DagsterInstance.from_config(str(tmp_path)) as instance:
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        assert type(instance.run_storage).__name__ == "SqliteRunStorage"
