"""The metadata catalog: write-once Parquet files, Hive-partitioned by arrival date, with
DuckDB views over them for SQL.

Layout: <root>/instances/arrival_date=YYYY-MM-DD/batch-<id>.parquet. A re-run of a batch
rewrites its own file with the same rows, so re-runs never duplicate.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import duckdb
import polars as pl

INSTANCE_SCHEMA = pl.Schema(
    {
        "sop_instance_uid": pl.String,
        "sop_class_uid": pl.String,
        "study_instance_uid": pl.String,
        "series_instance_uid": pl.String,
        "patient_id": pl.String,
        "patient_name": pl.String,
        "patient_sex": pl.String,
        "patient_birth_date": pl.Date,
        "study_date": pl.Date,
        "study_time": pl.String,
        "accession_number": pl.String,
        "study_description": pl.String,
        "series_description": pl.String,
        "modality": pl.String,
        "body_part_examined": pl.String,
        "institution_name": pl.String,
        "station_name": pl.String,
        "manufacturer": pl.String,
        "series_number": pl.Int32,
        "instance_number": pl.Int32,
        "rows": pl.Int32,
        "columns": pl.Int32,
        "number_of_frames": pl.Int32,
        "transfer_syntax_uid": pl.String,
        "file_size": pl.Int64,
        "source": pl.String,
        "calling_ae": pl.String,
        "received_at": pl.Datetime("us", "UTC"),
        "ledger_id": pl.Int64,
        "batch_id": pl.Int64,
        "run_id": pl.String,
        "destinations": pl.List(pl.String),
    }
)
REQUIRED_COLUMNS = ("sop_instance_uid", "study_instance_uid", "series_instance_uid", "sop_class_uid", "modality")


def instance_table(rows: Sequence[dict]) -> pl.DataFrame:
    # polars, not pyarrow: pyarrow imports pandas to convert Python values (~1 s per run).
    return pl.DataFrame(
        {name: [row.get(name) for row in rows] for name in INSTANCE_SCHEMA}, schema=INSTANCE_SCHEMA
    )


def write_batch(root: str | Path, table_name: str, arrival_date: str, batch_id: int, table: pl.DataFrame) -> str:
    """Write one batch's rows as one Parquet file (atomically); return its path."""
    folder = Path(root) / table_name / f"arrival_date={arrival_date}"
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"batch-{batch_id:08d}.parquet"
    tmp = folder / f".{final.name}.tmp"
    table.write_parquet(tmp, compression="zstd")
    os.replace(tmp, final)
    return str(final)


def _sql_literal(path: Path | str) -> str:
    return str(path).replace("'", "''")


def connect(root: str | Path, database: str = ":memory:") -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with the catalog's views.

    `instances_all` is every row written; `instances` keeps the newest row per SOP Instance
    UID (an instance sent twice is cataloged twice), `series` and `studies` roll it up.
    """
    con = duckdb.connect(database)
    glob = _sql_literal(Path(root) / "instances" / "**" / "*.parquet")
    if not any((Path(root) / "instances").rglob("*.parquet")):
        # No data yet: empty views with the right columns.
        con.register("_empty_instances", instance_table([]).to_arrow())
        source = "SELECT *, NULL::DATE AS arrival_date FROM _empty_instances"
    else:
        source = f"SELECT * FROM read_parquet('{glob}', hive_partitioning = true, union_by_name = true)"
    con.execute(f"CREATE OR REPLACE VIEW instances_all AS {source}")
    con.execute(
        """CREATE OR REPLACE VIEW instances AS
           SELECT * FROM instances_all
           QUALIFY row_number() OVER (PARTITION BY sop_instance_uid ORDER BY ledger_id DESC) = 1"""
    )
    con.execute(
        """CREATE OR REPLACE VIEW series AS
           SELECT series_instance_uid, any_value(study_instance_uid) AS study_instance_uid,
                  any_value(modality) AS modality, any_value(series_number) AS series_number,
                  any_value(series_description) AS series_description,
                  any_value(body_part_examined) AS body_part_examined,
                  count(*) AS instances, sum(file_size) AS bytes
           FROM instances GROUP BY series_instance_uid"""
    )
    con.execute(
        """CREATE OR REPLACE VIEW studies AS
           SELECT study_instance_uid, any_value(patient_id) AS patient_id,
                  any_value(accession_number) AS accession_number, min(study_date) AS study_date,
                  string_agg(DISTINCT modality, '\\' ORDER BY modality) AS modalities_in_study,
                  any_value(institution_name) AS institution_name,
                  count(DISTINCT series_instance_uid) AS series, count(*) AS instances,
                  sum(file_size) AS bytes, max(received_at) AS last_received_at
           FROM instances GROUP BY study_instance_uid"""
    )
    return con


def compact_partition(root: str | Path, table_name: str, arrival_date: str, min_files: int) -> tuple[int, int] | None:
    """Merge a partition's files into one when it has at least `min_files`.

    Returns (files merged, rows) or None. The merged file is written and renamed into place
    before the originals are removed: a reader never misses rows (the `instances` view drops
    the duplicates it may see for that moment). A batch re-run after compaction writes its
    file again; `instances` still shows each SOP Instance UID once.
    """
    folder = Path(root) / table_name / f"arrival_date={arrival_date}"
    files = sorted(p for p in folder.glob("*.parquet") if not p.name.startswith("."))
    if len(files) < max(min_files, 2):
        return None
    merged = pl.read_parquet(files)
    final = folder / f"compacted-{files[0].stem}-{files[-1].stem}.parquet"
    tmp = folder / f".{final.name}.tmp"
    merged.write_parquet(tmp, compression="zstd")
    os.replace(tmp, final)
    for path in files:
        if path != final:
            path.unlink()
    return len(files), merged.height


def partitions(root: str | Path, table_name: str) -> list[str]:
    """Arrival dates that have a folder in the catalog, oldest first."""
    folder = Path(root) / table_name
    prefix = "arrival_date="
    return sorted(p.name[len(prefix):] for p in folder.glob(f"{prefix}*") if p.is_dir())
