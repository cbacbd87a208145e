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
import pyarrow as pa
import pyarrow.parquet as pq

INSTANCE_SCHEMA = pa.schema(
    [
        ("sop_instance_uid", pa.string()),
        ("sop_class_uid", pa.string()),
        ("study_instance_uid", pa.string()),
        ("series_instance_uid", pa.string()),
        ("patient_id", pa.string()),
        ("patient_name", pa.string()),
        ("patient_sex", pa.string()),
        ("patient_birth_date", pa.date32()),
        ("study_date", pa.date32()),
        ("study_time", pa.string()),
        ("accession_number", pa.string()),
        ("study_description", pa.string()),
        ("series_description", pa.string()),
        ("modality", pa.string()),
        ("body_part_examined", pa.string()),
        ("institution_name", pa.string()),
        ("station_name", pa.string()),
        ("manufacturer", pa.string()),
        ("series_number", pa.int32()),
        ("instance_number", pa.int32()),
        ("rows", pa.int32()),
        ("columns", pa.int32()),
        ("number_of_frames", pa.int32()),
        ("transfer_syntax_uid", pa.string()),
        ("file_size", pa.int64()),
        ("source", pa.string()),
        ("calling_ae", pa.string()),
        ("received_at", pa.timestamp("us", tz="UTC")),
        ("ledger_id", pa.int64()),
        ("batch_id", pa.int64()),
        ("run_id", pa.string()),
        ("destinations", pa.list_(pa.string())),
    ]
)
REQUIRED_COLUMNS = ("sop_instance_uid", "study_instance_uid", "series_instance_uid", "sop_class_uid", "modality")


def instance_table(rows: Sequence[dict]) -> pa.Table:
    return pa.Table.from_pylist(list(rows), schema=INSTANCE_SCHEMA)


def write_batch(root: str | Path, table_name: str, arrival_date: str, batch_id: int, table: pa.Table) -> str:
    """Write one batch's rows as one Parquet file (atomically); return its path."""
    folder = Path(root) / table_name / f"arrival_date={arrival_date}"
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"batch-{batch_id:08d}.parquet"
    tmp = folder / f".{final.name}.tmp"
    pq.write_table(table, tmp, compression="zstd")
    os.replace(tmp, final)
    return str(final)


def connect(root: str | Path, database: str = ":memory:") -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with the catalog's views.

    `instances_all` is every row written; `instances` keeps the newest row per SOP Instance
    UID (an instance sent twice is cataloged twice), `series` and `studies` roll it up.
    """
    con = duckdb.connect(database)
    glob = str(Path(root) / "instances" / "**" / "*.parquet")
    if not any((Path(root) / "instances").rglob("*.parquet")):
        # No data yet: empty views with the right columns.
        con.register("_empty_instances", instance_table([]))
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
