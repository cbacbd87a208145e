"""Configuration models of remote sources: DICOMweb (incl. Google Cloud Healthcare API), DIMSE
(C-FIND + C-GET or C-MOVE) and filesystem archives. Each is polled and/or backfilled.

YAML sample (see README, "Remote sources and backfills"):

    sources:
      - name: pacs-web
        type: dicomweb
        url: https://pacs.example.org/dicom-web
        auth: {type: bearer, token: "${PACS_TOKEN}"}
        filters: {Modality: CT}
        transfer_syntax: ["*"]            # as stored; or a preference list of UIDs
      - name: pacs-dimse
        type: dimse
        host: 10.0.0.5
        port: 104
        remote_ae: PACS
        ae_title: AXIOM
        retrieve: move                    # or get (no listener needed)
        move_destination: {ae_title: AXIOM_MOVE, port: 11113}
      - name: old-archive
        type: filesystem
        path: /mnt/archive
"""
from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from axiom_dagster.config.listeners import TLSConfig, _check_ae_title

SOURCE_NAME = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,47}$"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PollConfig(_Model):
    """How a poll sensor watches a source: StudyDate window [high-water mark - lookback, today],
    bounded work per tick."""

    enabled: bool = True
    interval_seconds: int = Field(60, ge=5)
    lookback_days: int = Field(1, ge=0)
    # QIDO limit / C-FIND results read per tick; the next tick goes on where this one stopped.
    page_size: int = Field(1000, ge=1)
    max_studies_per_tick: int = Field(500, ge=1)
    studies_per_run: int = Field(20, ge=1)


class BackfillConfig(_Model):
    """The StudyDate-day partitions of a source's backfill asset."""

    start_date: date = date(2000, 1, 1)
    days_per_run: int = Field(7, ge=1)
    # Studies retrieved at once from this source inside one run (its concurrency pool limits runs).
    concurrency: int = Field(2, ge=1, le=32)
    # A source that caps results per query: a day with this many results is split by modality.
    max_results_per_query: int = Field(1000, ge=1)
    split_modalities: list[str] = Field(
        default_factory=lambda: ["CT", "MR", "CR", "DX", "US", "MG", "NM", "PT", "XA", "RF", "OT", "SR", "SEG", "PR", "KO", "DOC"]
    )


class NoAuth(_Model):
    type: Literal["none"] = "none"


class BasicAuth(_Model):
    type: Literal["basic"] = "basic"
    username: str
    password: str  # from ${ENV}


class BearerAuth(_Model):
    type: Literal["bearer"] = "bearer"
    token: str  # from ${ENV}


class GoogleAuth(_Model):
    """Google Cloud Healthcare API: a service-account key file, or Application Default
    Credentials when none is given."""

    type: Literal["google"] = "google"
    credentials_file: Path | None = None
    scopes: list[str] = Field(default_factory=lambda: ["https://www.googleapis.com/auth/cloud-healthcare"])


DicomwebAuth = Annotated[Union[NoAuth, BasicAuth, BearerAuth, GoogleAuth], Field(discriminator="type")]


class _SourceBase(_Model):
    name: str = Field(pattern=SOURCE_NAME)
    # QIDO / C-FIND matching keys by keyword (Modality, InstitutionName, StudyDescription, ...).
    filters: dict[str, str] = Field(default_factory=dict)
    poll: PollConfig = PollConfig()
    backfill: BackfillConfig = BackfillConfig()

    @field_validator("filters")
    @classmethod
    def _keywords_known(cls, value: dict[str, str]) -> dict[str, str]:
        from pydicom.datadict import tag_for_keyword

        unknown = [k for k in value if tag_for_keyword(k) is None]
        if unknown:
            raise ValueError(f"unknown DICOM keywords in filters: {', '.join(sorted(unknown))}")
        return value


class DicomwebSource(_SourceBase):
    type: Literal["dicomweb"] = "dicomweb"
    # Base URL of the DICOMweb service; for Google: https://healthcare.googleapis.com/v1/
    # projects/P/locations/L/datasets/D/dicomStores/S/dicomWeb
    url: str = Field(pattern=r"^https?://")
    auth: DicomwebAuth = NoAuth()
    # Preferred transfer syntaxes, best first; "*" accepts what the server holds (no transcoding).
    transfer_syntax: list[str] = Field(default_factory=lambda: ["*"], min_length=1)
    timeout_seconds: float = Field(60.0, gt=0)


class MoveDestination(_Model):
    """Our own C-STORE listener that a C-MOVE sends to (started for the retrieval)."""

    ae_title: str
    port: int = Field(ge=1, le=65535)
    bind_address: str = "127.0.0.1"

    _ae = field_validator("ae_title")(classmethod(lambda cls, v: _check_ae_title(v)))


class DimseSource(_SourceBase):
    type: Literal["dimse"] = "dimse"
    host: str
    port: int = Field(ge=1, le=65535)
    remote_ae: str
    ae_title: str = "AXIOM"
    tls: TLSConfig | None = None
    retrieve: Literal["get", "move"] = "get"
    move_destination: MoveDestination | None = None
    timeout_seconds: float = Field(60.0, gt=0)

    _aes = field_validator("remote_ae", "ae_title")(classmethod(lambda cls, v: _check_ae_title(v)))

    @model_validator(mode="after")
    def _move_needs_destination(self):
        if self.retrieve == "move" and self.move_destination is None:
            raise ValueError("retrieve: move needs move_destination (our AE title and port)")
        return self


class FilesystemSource(_SourceBase):
    type: Literal["filesystem"] = "filesystem"
    path: Path


Source = Annotated[Union[DicomwebSource, DimseSource, FilesystemSource], Field(discriminator="type")]


def unique_sources(value: list) -> list:
    names = [s.name for s in value]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"source names must be unique; repeated: {', '.join(dupes)}")
    return value
