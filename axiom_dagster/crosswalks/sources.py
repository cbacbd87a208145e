"""Reading a crosswalk's source into an Arrow table of text columns.

Every value becomes stripped text (None stays None) so a snapshot compares keys the way the
rule engine does, whatever the source's column types. SQL goes through SQLAlchemy (the URL
chooses PostgreSQL, MySQL/MariaDB or SQL Server); files and objects are CSV or Parquet.
"""
from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Iterable, Sequence

import pyarrow as pa

from axiom_dagster.config.crosswalks import CrosswalkSpec, FileSource, ObjectSource, SqlSource

FETCH_ROWS = 50_000


class CrosswalkSourceError(ValueError):
    """A source that cannot be read; the message names the crosswalk and the problem."""


def _text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return str(value).strip()


def _select_columns(name: str, spec: CrosswalkSpec, columns: Sequence[str]) -> list[str]:
    missing = [c for c in spec.keys + spec.values if c not in columns]
    if missing:
        raise CrosswalkSourceError(f"crosswalks.{name}: source has no column(s) {missing}; has {list(columns)}")
    return list(spec.keys) + (list(spec.values) or [c for c in columns if c not in spec.keys])


def _table(columns: Sequence[str], rows: Iterable[Sequence[object]]) -> pa.Table:
    data: list[list[str | None]] = [[] for _ in columns]
    for row in rows:
        for i, value in enumerate(row):
            data[i].append(_text(value))
    return pa.table({c: pa.array(v, type=pa.string()) for c, v in zip(columns, data)})


def sql_engine(url: str):
    import sqlalchemy as sa

    return sa.create_engine(url, pool_pre_ping=True)


def sql_statement(source: SqlSource, columns: Sequence[str] | None = None):
    """SELECT for a table source (quoted identifiers) or the configured query as text."""
    import sqlalchemy as sa

    if source.query is not None:
        return sa.text(source.query)
    schema, _, table = source.table.rpartition(".")
    t = sa.table(table, *(sa.column(c) for c in columns or []), schema=schema or None)
    return sa.select(*t.columns) if columns else sa.select(sa.text("*")).select_from(t)


def read_sql(name: str, spec: CrosswalkSpec, source: SqlSource) -> pa.Table:
    import sqlalchemy as sa

    engine = sql_engine(source.url)
    try:
        with engine.connect() as conn:
            result = conn.execution_options(stream_results=True).execute(sql_statement(source))
            columns = list(result.keys())
            try:
                wanted = _select_columns(name, spec, columns)
            except CrosswalkSourceError:
                result.close()
                raise
            pos = [columns.index(c) for c in wanted]
            rows: list[tuple] = []
            while chunk := result.fetchmany(FETCH_ROWS):
                rows.extend(tuple(r[i] for i in pos) for r in chunk)
            return _table(wanted, rows)
    except sa.exc.SQLAlchemyError as exc:
        # The driver's message can quote values; name the kind of failure only.
        raise CrosswalkSourceError(f"crosswalks.{name}: cannot read the sql source: {type(exc).__name__}: "
                                   f"{str(exc.orig if getattr(exc, 'orig', None) else exc).splitlines()[0][:200]}") from None
    finally:
        engine.dispose()


def _format(path: str, fmt: str | None) -> str:
    return fmt or ("parquet" if path.lower().endswith((".parquet", ".pq")) else "csv")


def read_bytes_table(name: str, spec: CrosswalkSpec, data: bytes, fmt: str, delimiter: str, encoding: str) -> pa.Table:
    if fmt == "parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(io.BytesIO(data))
        wanted = _select_columns(name, spec, table.column_names)
        return _table(wanted, zip(*(table.column(c).to_pylist() for c in wanted)))
    reader = csv.reader(io.StringIO(data.decode(encoding)), delimiter=delimiter)
    header = next(reader, [])
    wanted = _select_columns(name, spec, header)
    pos = [header.index(c) for c in wanted]
    return _table(wanted, ([r[i] if i < len(r) else None for i in pos] for r in reader))


def read_file(name: str, spec: CrosswalkSpec, source: FileSource, base_dir: Path | None) -> pa.Table:
    path = Path(source.path)
    if not path.is_absolute() and base_dir is not None:
        path = Path(base_dir) / path
    if not path.exists():
        raise CrosswalkSourceError(f"crosswalks.{name}.source.path: file not found: {path}")
    return read_bytes_table(name, spec, path.read_bytes(), _format(source.path, source.format),
                            source.delimiter, source.encoding)


def read_object(name: str, spec: CrosswalkSpec, source: ObjectSource) -> pa.Table:
    scheme, rest = source.uri.split("://", 1)
    bucket, key = rest.split("/", 1)
    try:
        if scheme == "gs":
            from google.cloud import storage

            client = storage.Client(client_options={"api_endpoint": source.endpoint_url} if source.endpoint_url else None)
            data = client.bucket(bucket).blob(key).download_as_bytes()
        else:
            import boto3

            data = boto3.client("s3", endpoint_url=source.endpoint_url).get_object(Bucket=bucket, Key=key)["Body"].read()
    except ImportError as exc:
        raise CrosswalkSourceError(f"crosswalks.{name}: the {scheme} client library is not installed ({exc.name})") from None
    except Exception as exc:
        raise CrosswalkSourceError(f"crosswalks.{name}: cannot read {scheme}://{bucket}/...: {type(exc).__name__}") from None
    return read_bytes_table(name, spec, data, _format(key, source.format), source.delimiter, source.encoding)


def read_source(name: str, spec: CrosswalkSpec, base_dir: Path | None = None) -> pa.Table:
    """The source's key and value columns as text, in configured order (keys first)."""
    source = spec.source
    if isinstance(source, SqlSource):
        return read_sql(name, spec, source)
    if isinstance(source, FileSource):
        return read_file(name, spec, source, base_dir)
    if isinstance(source, ObjectSource):
        return read_object(name, spec, source)
    raise CrosswalkSourceError(f"crosswalks.{name}: has no source to snapshot (a plain file crosswalk)")


def live_lookup(source: SqlSource, engine, key_columns: Sequence[str], key: Sequence[str]) -> dict[str, str | None] | None:
    """One row by key straight from the SQL source (the `live` on-miss policy); None when no
    row or more than one row matches."""
    import sqlalchemy as sa

    if source.query is not None:
        inner = sa.text(source.query).columns(*(sa.column(c) for c in key_columns)).subquery("q")
        cols = [inner.c[c] for c in key_columns]  # quoted by the dialect
        stmt = sa.select(sa.text("*")).select_from(inner)
    else:
        schema, _, table = source.table.rpartition(".")
        t = sa.table(table, *(sa.column(c) for c in key_columns), schema=schema or None)
        cols = [t.c[c] for c in key_columns]
        stmt = sa.select(sa.text("*")).select_from(t)
    stmt = stmt.where(*(c == sa.bindparam(f"k{i}", v, type_=sa.String) for i, (c, v) in enumerate(zip(cols, key))))
    with engine.connect() as conn:
        result = conn.execute(stmt.limit(2))
        names = list(result.keys())
        rows = result.fetchall()
    if len(rows) != 1:
        return None
    return {c: _text(v) for c, v in zip(names, rows[0])}
