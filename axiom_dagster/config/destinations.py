"""Destination models of the YAML file: folder, DICOM C-STORE, STOW-RS, Google Healthcare API
DICOM store, GCS and S3 buckets; a discriminated union on `type` (default: filesystem).

Secrets (passwords, tokens, keys) are `${ENV}` references in the file, never literals.
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator, model_validator

DEFAULT_PATH_TEMPLATE = "{PatientID}/{StudyInstanceUID}/{SeriesInstanceUID}/{SOPInstanceUID}.dcm"
DEFAULT_OBJECT_TEMPLATE = "{StudyInstanceUID}/{SeriesInstanceUID}/{SOPInstanceUID}.dcm"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _names_sop(value: str) -> str:
    if "{SOPInstanceUID}" not in value:
        raise ValueError("the template must contain {SOPInstanceUID} so instances do not collide")
    return value


class RetryPolicy(_Model):
    """Exponential backoff with full jitter: the n-th retry waits a random time up to
    min(max_seconds, initial_seconds * multiplier**(n-1)); after max_age_seconds since the
    first attempt the instance becomes an exception for manual action."""

    initial_seconds: float = Field(30.0, ge=0)
    multiplier: float = Field(2.0, ge=1)
    max_seconds: float = Field(1800.0, ge=0)
    jitter: bool = True
    max_age_seconds: float = Field(86_400.0, ge=0)


class _NetworkDestination(_Model):
    name: str
    retry: RetryPolicy = RetryPolicy()
    # Instances per delivery call (one association / one STOW request / one upload round).
    batch_size: int = Field(200, ge=1)
    # Studies sent at once (each on its own association or request; C-STORE in worker
    # processes): a peer answers each C-STORE in turn, so several keep it busy.
    parallel: int = Field(4, ge=1, le=32)
    # Query the destination after sending (C-FIND or QIDO-RS) and record what it reports.
    verify: bool = False
    timeout_seconds: float = Field(30.0, gt=0)


class FilesystemDestination(_Model):
    type: Literal["filesystem"] = "filesystem"
    name: str
    path: Path
    path_template: str = DEFAULT_PATH_TEMPLATE
    # An instance routed unchanged becomes a hard link to its landed file instead of a copy
    # (where the folder is on the landing zone's filesystem; elsewhere it is copied): no
    # second copy on disk and no write. Both names share one inode, so a consumer that
    # rewrites a routed file in place (rather than writing a new file) changes the landed
    # copy too: off by default.
    link_unchanged: bool = False

    @field_validator("path_template")
    @classmethod
    def _template_names_sop(cls, value: str) -> str:
        return _names_sop(value)


class TlsConfig(_Model):
    """TLS to the peer: ca_file verifies the server; cert_file + key_file send our certificate
    (mutual TLS)."""

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    server_hostname: str | None = None

    @model_validator(mode="after")
    def _cert_and_key_together(self):
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together (mutual TLS)")
        return self


class DicomDestination(_NetworkDestination):
    """C-STORE SCU: one association per study, presentation contexts for what the study holds."""

    type: Literal["dicom"]
    host: str
    port: int = Field(ge=1, le=65535)
    ae_title: str = Field(min_length=1, max_length=16)
    calling_ae_title: str = Field("AXIOM", min_length=1, max_length=16)
    max_pdu: int = Field(1_048_576, ge=0)
    tls: TlsConfig | None = None


class HttpAuth(_Model):
    """none | basic (username, password) | bearer (token) | api_key (token sent in `header`)."""

    type: Literal["none", "basic", "bearer", "api_key"] = "none"
    username: str | None = None
    password: str | None = None
    token: str | None = None
    header: str = "X-API-Key"

    @model_validator(mode="after")
    def _fields_for_type(self):
        need = {"basic": ("username", "password"), "bearer": ("token",), "api_key": ("token",)}.get(self.type, ())
        missing = [f for f in need if not getattr(self, f)]
        if missing:
            raise ValueError(f"auth type {self.type} needs {', '.join(missing)}")
        return self


class StowDestination(_NetworkDestination):
    """STOW-RS to any DICOMweb server; `url` is the service root (…/dicom-web)."""

    type: Literal["dicomweb"]
    url: str
    auth: HttpAuth = HttpAuth()
    batch_size: int = Field(50, ge=1)


class HealthcareDestination(_NetworkDestination):
    """A Google Cloud Healthcare API DICOM store, reached by STOW-RS with Google credentials
    (Application Default Credentials, or a service account key in `credentials_file`)."""

    type: Literal["google_healthcare"]
    project: str
    location: str
    dataset: str
    dicom_store: str
    credentials_file: Path | None = None
    endpoint: str = "https://healthcare.googleapis.com/v1"
    batch_size: int = Field(50, ge=1)

    @property
    def dicomweb_url(self) -> str:
        return (
            f"{self.endpoint.rstrip('/')}/projects/{self.project}/locations/{self.location}"
            f"/datasets/{self.dataset}/dicomStores/{self.dicom_store}/dicomWeb"
        )


class _BucketDestination(_NetworkDestination):
    bucket: str
    path_template: str = DEFAULT_OBJECT_TEMPLATE
    # A local stand-in or another compatible service (emulator, MinIO); None = the cloud.
    endpoint: str | None = None
    batch_size: int = Field(100, ge=1)

    @field_validator("path_template")
    @classmethod
    def _template_names_sop(cls, value: str) -> str:
        return _names_sop(value)


class GcsDestination(_BucketDestination):
    """Google Cloud Storage objects, CRC32C verified; credentials from ADC or credentials_file."""

    type: Literal["gcs"]
    project: str | None = None
    credentials_file: Path | None = None


class S3Destination(_BucketDestination):
    """S3 objects, MD5 (ETag) verified; credentials from the usual AWS environment."""

    type: Literal["s3"]
    region: str | None = None


NetworkDestination = Union[DicomDestination, StowDestination, HealthcareDestination, GcsDestination, S3Destination]


DESTINATION_TYPES = frozenset({"filesystem", "dicom", "dicomweb", "google_healthcare", "gcs", "s3"})


def _destination_type(value) -> str:
    if isinstance(value, dict):
        return value.get("type", "filesystem")
    return getattr(value, "type", "filesystem")


Destination = Annotated[
    Union[
        Annotated[FilesystemDestination, Tag("filesystem")],
        Annotated[DicomDestination, Tag("dicom")],
        Annotated[StowDestination, Tag("dicomweb")],
        Annotated[HealthcareDestination, Tag("google_healthcare")],
        Annotated[GcsDestination, Tag("gcs")],
        Annotated[S3Destination, Tag("s3")],
    ],
    Discriminator(_destination_type),
]
