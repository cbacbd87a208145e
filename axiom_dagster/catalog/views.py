"""DuckDB views over the catalog's Parquet files, in a connection or in a generated
`catalog.duckdb` that any DuckDB client opens read-only.

Imports only duckdb at module level: `axiom sql` goes through here and must start fast.

Views:
- `instances`: one row per SOP Instance UID (duplicates were resolved when written)
- `superseded`: rows replaced by a later arrival, with the batch that replaced them
- `instances_all`: both
- `series`, `studies`: the per-batch rollup files combined per UID
"""
from __future__ import annotations

import os
import sys

import duckdb

DUCKDB_FILE = "catalog.duckdb"


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _scan(root: str, table: str, files: list[str] | None = None, **extra: str) -> str:
    """A table's files (or these `files`, relative to the root) as one relation."""
    options = ", ".join(f"{k} = {v}" for k, v in extra.items())
    glob = _lit(f"{root}/{table}/*/*.parquet") if files is None else _files(root, files)
    return (
        f"read_parquet({glob}, hive_partitioning = true, union_by_name = true, "
        f"hive_types = {{'arrival_date': DATE}}{', ' + options if options else ''})"
    )


def _files(root: str, files: list[str]) -> str:
    return "[" + ", ".join(_lit(f"{root}/{f}") for f in files) + "]"


def view_statements(root: str) -> list[str]:
    root = root.rstrip("/")
    return [
        f"CREATE OR REPLACE VIEW instances AS SELECT * FROM {_scan(root, 'instances')}",
        f"CREATE OR REPLACE VIEW superseded AS SELECT * FROM {_scan(root, 'superseded')}",
        "CREATE OR REPLACE VIEW instances_all AS SELECT * FROM instances UNION ALL BY NAME SELECT * FROM superseded",
        f"""CREATE OR REPLACE VIEW series AS
            SELECT series_instance_uid, any_value(study_instance_uid) AS study_instance_uid,
                   any_value(patient_id) AS patient_id, any_value(modality) AS modality,
                   any_value(series_number) AS series_number,
                   any_value(series_description) AS series_description,
                   any_value(body_part_examined) AS body_part_examined,
                   any_value(institution_name) AS institution_name,
                   sum(instances)::BIGINT AS instances, sum(bytes)::BIGINT AS bytes,
                   min(first_content_date) AS first_content_date, max(last_content_date) AS last_content_date,
                   min(first_received_at) AS first_received_at, max(last_received_at) AS last_received_at,
                   min(arrival_date) AS first_arrival_date, max(arrival_date) AS last_arrival_date
            FROM {_scan(root, 'series')} GROUP BY series_instance_uid""",
        f"""CREATE OR REPLACE VIEW studies AS
            SELECT study_instance_uid, any_value(patient_id) AS patient_id,
                   any_value(patient_name) AS patient_name,
                   any_value(accession_number) AS accession_number, min(study_date) AS study_date,
                   any_value(study_description) AS study_description,
                   any_value(institution_name) AS institution_name,
                   list_sort(list_distinct(flatten(list(modalities)))) AS modalities,
                   len(list_distinct(flatten(list(series_instance_uids))))::BIGINT AS series,
                   sum(instances)::BIGINT AS instances, sum(bytes)::BIGINT AS bytes,
                   min(first_received_at) AS first_received_at, max(last_received_at) AS last_received_at,
                   min(arrival_date) AS first_arrival_date, max(arrival_date) AS last_arrival_date
            FROM {_scan(root, 'studies')} GROUP BY study_instance_uid""",
    ]


def _register_remote(con: duckdb.DuckDBPyConnection, root: str) -> None:
    if "://" in root:
        from axiom_dagster.catalog.storage import CatalogStorage

        fs = CatalogStorage(root).fs
        fs.invalidate_cache()  # fsspec caches listings per instance; other writers add files
        con.register_filesystem(fs)


def connect(root: str, *, prefer_file: bool = True) -> duckdb.DuckDBPyConnection:
    """A connection with the catalog's views: the generated catalog.duckdb opened read-only
    when there is one (local catalogs), else an in-memory database with the views."""
    root = str(root).rstrip("/")
    path = os.path.join(root, DUCKDB_FILE)
    if prefer_file and "://" not in root and os.path.exists(path):
        return duckdb.connect(path, read_only=True)
    con = duckdb.connect()
    _register_remote(con, root)
    if "://" not in root and not os.path.isdir(os.path.join(root, "instances")):
        from axiom_dagster.catalog.storage import CatalogStorage
        from axiom_dagster.catalog.tables import ensure_schema_files

        ensure_schema_files(CatalogStorage(root))
    for statement in view_statements(root):
        con.execute(statement)
    return con


def write_duckdb_file(root: str) -> str | None:
    """(Re)generate <root>/catalog.duckdb with the views (local catalogs only); atomic."""
    root = str(root).rstrip("/")
    if "://" in root:
        return None
    final = os.path.join(os.path.abspath(root), DUCKDB_FILE)
    tmp = f"{final}.{os.getpid()}.tmp"
    if os.path.exists(tmp):
        os.unlink(tmp)
    con = duckdb.connect(tmp)
    try:
        for statement in view_statements(os.path.abspath(root)):
            con.execute(statement)
    finally:
        con.close()
    os.replace(tmp, final)
    return final


def existing_rows(root: str, sop_uids: list[str], exclude: str, files: list[str] | None = None):
    """Rows of `instances` with these SOP Instance UIDs, with `_file` (relative path), as polars;
    from these instances `files` only when given (relative paths)."""
    import polars as pl

    from axiom_dagster.catalog.schema import INSTANCE_SCHEMA

    empty = pl.DataFrame(schema={**INSTANCE_SCHEMA, "_file": pl.String})
    if not sop_uids or files == []:
        return empty
    root = str(root).rstrip("/")
    con = duckdb.connect()
    _register_remote(con, root)
    wanted = pl.DataFrame({"sop": sop_uids})  # noqa: F841 - read by DuckDB by name
    scan = _scan(root, "instances", files, filename="true")
    matching = f"FROM {scan} WHERE sop_instance_uid IN (SELECT sop FROM wanted)"
    # Most batches bring only new instances: one column answers that, without reading rows.
    if not con.execute(f"SELECT 1 {matching} LIMIT 1").fetchall():
        return empty
    found = con.sql(f"SELECT * {matching}").pl()
    if found.height == 0:
        return empty
    prefix = root + "/"
    found = found.with_columns(pl.col("filename").str.strip_prefix(prefix).alias("_file"))
    found = found.filter(pl.col("_file") != exclude)
    missing = [c for c in INSTANCE_SCHEMA if c not in found.columns]
    found = found.with_columns(pl.lit(None, INSTANCE_SCHEMA[c]).alias(c) for c in missing)
    return found.select([pl.col(c).cast(t) for c, t in INSTANCE_SCHEMA.items()] + [pl.col("_file")])


def count_duplicates(root: str, sop_uids: list[str], files: list[str] | None = None) -> int:
    """SOP Instance UIDs of `sop_uids` with more than one row in the instances files (or in
    these `files`, relative paths)."""
    import polars as pl

    if files == []:
        return 0
    root = str(root).rstrip("/")
    con = duckdb.connect()
    _register_remote(con, root)
    wanted = pl.DataFrame({"sop": sop_uids})  # noqa: F841 - read by DuckDB by name
    # One column: no union_by_name (every instances file has it), no hive columns.
    source = _lit(f"{root}/instances/*/*.parquet") if files is None else _files(root, files)
    scan = f"read_parquet({source}, hive_partitioning = false)"
    return con.execute(f"SELECT count(*) FROM (SELECT sop_instance_uid FROM {scan} "
                       f"WHERE sop_instance_uid IN (SELECT sop FROM wanted) GROUP BY 1 HAVING count(*) > 1)").fetchone()[0]


def uids_in_files(root: str, files: list[str]) -> dict[str, list[str]]:
    """The SOP Instance UIDs in each of these instances files (relative paths)."""
    root = str(root).rstrip("/")
    if not files:
        return {}
    con = duckdb.connect()
    _register_remote(con, root)
    prefix = len(root) + 1
    rows = con.execute(f"SELECT filename, list(sop_instance_uid) FROM read_parquet({_files(root, files)}, "
                       "hive_partitioning = false, filename = true) WHERE sop_instance_uid IS NOT NULL GROUP BY 1").fetchall()
    return {name[prefix:]: uids for name, uids in rows}


def file_row_counts(root: str, files: list[str]) -> dict[str, int]:
    """Rows per file, from the Parquet footers (no data read)."""
    root = str(root).rstrip("/")
    con = duckdb.connect()
    _register_remote(con, root)
    prefix = len(root) + 1
    rows = con.execute(f"SELECT file_name, sum(num_rows) FROM parquet_file_metadata({_files(root, files)}) GROUP BY 1").fetchall()
    return {name[prefix:]: int(n) for name, n in rows}


def run_query(con: duckdb.DuckDBPyConnection, query: str, fmt: str, output=None, max_rows: int = 100) -> None:
    """Run one query and write its result as a table, CSV, JSON (an array) or Parquet."""
    query = query.strip().rstrip(";")
    if fmt == "table":
        rel = con.sql(query)
        if rel is None:  # a statement without a result
            return
        if output is None:
            rel.show(max_rows=max_rows, max_width=200)
        else:
            with open(output, "w", encoding="utf-8") as handle:
                handle.write(str(rel) + "\n")
        return
    if fmt == "parquet" and output is None:
        raise duckdb.InvalidInputException("--format parquet needs -o FILE")
    options = {"csv": "FORMAT csv, HEADER true", "json": "FORMAT json, ARRAY true", "parquet": "FORMAT parquet"}[fmt]
    if output is not None:
        con.execute(f"COPY ({query}) TO {_lit(str(output))} ({options})")
        return
    # Not COPY TO /dev/stdout: when stdout is a file, that opens it again and truncates it.
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, f"result.{fmt}")
        con.execute(f"COPY ({query}) TO {_lit(path)} ({options})")
        sys.stdout.flush()
        with open(path, "rb") as handle:
            sys.stdout.buffer.write(handle.read())
        sys.stdout.flush()
