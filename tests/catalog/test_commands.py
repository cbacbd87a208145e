"""`axiom catalog build` and `axiom sql` as a user runs them."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import duckdb
import polars as pl

from axiom_dagster.catalog.schema import TABLES
from tests.helpers import small_archive

ROOT = Path(__file__).resolve().parents[2]
AXIOM = str(Path(sys.executable).with_name("axiom"))


def _axiom(*args, stdin=None, env=None):
    return subprocess.run([AXIOM, *args], capture_output=True, text=True, timeout=300, input=stdin,
                          env={**os.environ, **(env or {})})


def test_build_is_parallel_resumable_and_reports_non_dicom(tmp_path):
    archive = tmp_path / "archive"
    paths = small_archive(archive, studies=4, series=2, instances=40)  # 320 files: several chunks
    (archive / "notes.txt").write_text("not DICOM")
    catalog = tmp_path / "catalog"
    first = _axiom("catalog", "build", str(archive), "--catalog", str(catalog), "--workers", "2", "--batch-size", "100")
    assert first.returncode == 1, first.stderr  # one file was not DICOM
    assert f"catalogued {len(paths)} instances" in first.stdout
    assert "notes.txt: unreadable DICOM" in first.stdout
    con = duckdb.connect(str(catalog / "catalog.duckdb"), read_only=True)
    assert con.execute("SELECT count(*), count(DISTINCT sop_instance_uid), min(status) FROM instances").fetchall() == [
        (len(paths), len(paths), "catalogued")]
    assert con.execute("SELECT sum(instances) FROM studies").fetchall() == [(len(paths),)]
    con.close()
    # A re-run skips what is catalogued; a touched file is catalogued again and supersedes its old row.
    os.utime(paths[0], ns=(paths[0].stat().st_atime_ns, paths[0].stat().st_mtime_ns + 1_000_000))
    again = _axiom("catalog", "build", str(archive), "--catalog", str(catalog), "--no-progress")
    assert f"catalogued 1 instances" in again.stdout and f"{len(paths) - 1} already catalogued" in again.stdout
    con = duckdb.connect(str(catalog / "catalog.duckdb"), read_only=True)
    assert con.execute("SELECT count(*), (SELECT count(*) FROM superseded) FROM instances").fetchall() == [(len(paths), 1)]


def test_sql_formats_output_file_and_stdin(tmp_path):
    catalog = tmp_path / "catalog"
    small_archive(tmp_path / "a", studies=2, series=1, instances=3)
    assert _axiom("catalog", "build", str(tmp_path / "a"), "--catalog", str(catalog), "--no-progress").returncode == 0
    env = {"AXIOM_CATALOG": str(catalog)}
    query = "SELECT modality, count(*) AS n FROM instances GROUP BY 1 ORDER BY 1"
    table = _axiom("sql", query, env=env)
    assert table.returncode == 0 and "modality" in table.stdout and "│" in table.stdout
    csv = _axiom("sql", query, "--format", "csv", env=env).stdout.splitlines()
    assert csv[0] == "modality,n" and sum(int(line.split(",")[1]) for line in csv[1:]) == 6
    rows = json.loads(_axiom("sql", query, "--format", "json", env=env).stdout)
    assert sum(r["n"] for r in rows) == 6
    out = tmp_path / "studies.parquet"
    assert _axiom("sql", "SELECT * FROM studies", "--format", "parquet", "-o", str(out), env=env).returncode == 0
    assert pl.read_parquet(out).height == 2
    shell = _axiom("sql", stdin="SELECT count(*) AS n FROM series;\n", env=env)
    assert shell.returncode == 0 and "2" in shell.stdout
    bad = _axiom("sql", "SELECT nope FROM instances", env=env)
    assert bad.returncode == 1 and "SQL error" in bad.stderr


def test_sql_reads_the_catalog_path_from_the_config_file_without_pydantic_or_pydicom(tmp_path):
    (tmp_path / "cfg").mkdir()
    config = tmp_path / "cfg" / "axiom.yaml"
    config.write_text("catalog:\n  path: ${CAT_DIR:-../my-catalog}\n")
    from axiom_dagster.catalog.tables import write_batch

    write_batch(str(tmp_path / "my-catalog"), "2024-01-02", "batch-00000001", [])  # an existing (empty) catalog
    probe = (
        "import sys; from axiom_dagster.cli import main; rc = main(['--config', sys.argv[1], 'sql', '--format', 'csv',"
        " 'SELECT count(*) AS n FROM instances']);"
        " print(sorted(m for m in ('pydicom', 'pydantic', 'polars', 'dagster') if m in sys.modules))"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("AXIOM_CATALOG", "AXIOM_CONFIG")}
    done = subprocess.run([sys.executable, "-c", probe, str(config)], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-2:] == ["0", "[]"]


def test_docs_list_every_column():
    text = (ROOT / "docs" / "catalog.md").read_text()
    documented = set(re.findall(r"`([a-z_]+)`", text))
    for table, schema in TABLES.items():
        missing = set(schema) - documented
        assert not missing, f"docs/catalog.md does not list {table} columns {sorted(missing)}"
