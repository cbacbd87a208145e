"""Configuration models for crosswalks: where a lookup table comes from and how it is refreshed.

A crosswalk is either a plain file (`path`, read as is at compile time) or a `source` (SQL
database, file, GCS/S3 object) snapshotted to Parquet on its `cron` schedule; the rule engine
reads the promoted snapshot. Credentials come from the environment (`${VAR}` in URLs).
"""
from __future__ import annotations

import re
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_CRON_FIELD = re.compile(r"^[\d*/,\-A-Za-z]+$")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)?$")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class SqlSource(_Model):
    """A table or a query in a database SQLAlchemy reaches: postgresql+psycopg2://,
    mysql+pymysql:// (MySQL, MariaDB), mssql+pyodbc:// or mssql+pymssql:// URLs."""

    type: Literal["sql"] = "sql"
    url: str
    table: str | None = None  # "name" or "schema.name"
    query: str | None = None  # a SELECT; its column names are the crosswalk's columns

    @model_validator(mode="after")
    def _one(self) -> SqlSource:
        if (self.table is None) == (self.query is None):
            raise ValueError("a sql source needs exactly one of table, query")
        if self.table is not None and not _IDENTIFIER.match(self.table):
            raise ValueError(f"table must be a plain name or schema.name, got {self.table!r}")
        return self


class FileSource(_Model):
    type: Literal["file"] = "file"
    path: str  # relative to the config's folder
    format: Literal["csv", "parquet"] | None = None  # default: from the suffix
    delimiter: str = ","
    encoding: str = "utf-8"


class ObjectSource(_Model):
    """A CSV or Parquet object in a bucket: gs://bucket/key or s3://bucket/key.
    `endpoint_url` points the client at another endpoint (an emulator, MinIO)."""

    type: Literal["object"] = "object"
    uri: str
    format: Literal["csv", "parquet"] | None = None
    delimiter: str = ","
    encoding: str = "utf-8"
    endpoint_url: str | None = None

    @field_validator("uri")
    @classmethod
    def _scheme(cls, v: str) -> str:
        if not re.match(r"^(gs|s3)://[^/]+/.+", v):
            raise ValueError(f"uri must look like gs://bucket/key or s3://bucket/key, got {v!r}")
        return v


CrosswalkSource = Annotated[Union[SqlSource, FileSource, ObjectSource], Field(discriminator="type")]


class CrosswalkSpec(_Model):
    """One lookup table.

    `path` (with format/delimiter/encoding) is the plain file form, read at compile time.
    `source` is the snapshotted form: `keys` name the key columns (several allowed; they must
    be unique and non-null), `values` the value columns (empty: every other column), `cron`
    when to refresh (5-field cron in `timezone`), and a new snapshot whose row count differs
    from the promoted one by more than `max_row_drift` (a fraction) is not promoted.
    """

    path: str | None = None
    format: Literal["csv", "parquet"] | None = None
    delimiter: str = ","
    encoding: str = "utf-8"
    case_insensitive: bool = False  # match keys ignoring case
    source: CrosswalkSource | None = None
    keys: list[str] = []
    values: list[str] = []
    cron: str | None = None
    timezone: str = "UTC"
    max_row_drift: float = Field(default=0.2, ge=0)

    @field_validator("cron")
    @classmethod
    def _cron(cls, v: str | None) -> str | None:
        if v is not None and (len(v.split()) != 5 or not all(_CRON_FIELD.match(f) for f in v.split())):
            raise ValueError(f"cron must have 5 fields like '0 3 * * *', got {v!r}")
        return v

    @model_validator(mode="after")
    def _form(self) -> CrosswalkSpec:
        if (self.path is None) == (self.source is None):
            raise ValueError("a crosswalk needs exactly one of path, source")
        if self.source is not None and not self.keys:
            raise ValueError("a crosswalk with a source needs keys (its key columns)")
        if self.source is None and (self.cron or self.keys or self.values):
            raise ValueError("cron, keys and values belong to a crosswalk with a source")
        return self

    @property
    def snapshotted(self) -> bool:
        return self.source is not None
