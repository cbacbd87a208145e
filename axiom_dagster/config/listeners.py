"""Configuration models of the realtime ingest service: DICOM listeners, HTTP, auth.

YAML sample (see README, "Realtime ingest"):

    listeners:
      - name: modalities
        ae_title: AXIOM
        port: 11112
        bind_address: 127.0.0.1
        allowed_calling_aes: [CT01, MR02]      # empty: any calling AE title
        allowed_networks: [10.0.0.0/8]          # empty: any source address
      - name: pacs-tls
        ae_title: AXIOM_TLS
        port: 2762
        tls: {cert: certs/server.pem, key: certs/server.key, ca: certs/ca.pem, require_client_cert: true}
    http:
      bind: 127.0.0.1
      port: 8080
      disk_free_threshold_mb: 1024
    auth:
      jwt_secret: ${AXIOM_JWT_SECRET}
"""
from __future__ import annotations

import ipaddress
import re
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


_UID = re.compile(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))+")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _check_ae_title(value: str) -> str:
    text = value.strip()
    if not text or len(text) > 16 or "\\" in text or any(ord(c) < 0x20 or ord(c) > 0x7E for c in text):
        raise ValueError(f"AE title must be 1-16 printable ASCII characters without backslash: {value!r}")
    return text


class TLSConfig(_Model):
    """TLS for a DICOM listener; with `require_client_cert` (mutual TLS) peers must present a
    certificate signed by `ca`."""

    cert: Path
    key: Path
    ca: Path | None = None
    require_client_cert: bool = False

    @model_validator(mode="after")
    def _mutual_needs_ca(self):
        if self.require_client_cert and self.ca is None:
            raise ValueError("require_client_cert needs a ca file to verify client certificates")
        return self


class DicomListener(_Model):
    """One C-STORE/C-ECHO SCP. An association is rejected unless its calling AE title is in
    `allowed_calling_aes` and its source address is in one of `allowed_networks` (an empty
    list allows any)."""

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    ae_title: str
    port: int = Field(ge=0, le=65535)
    bind_address: str = "127.0.0.1"
    allowed_calling_aes: list[str] = Field(default_factory=list)
    allowed_networks: list[str] = Field(default_factory=list)
    # Reject associations whose called AE title is not this listener's AE title.
    require_called_ae: bool = True
    tls: TLSConfig | None = None
    max_associations: int = Field(32, ge=1)
    # Largest P-DATA PDU we accept (0 = unlimited); larger PDUs mean fewer Python round trips.
    max_pdu_size: int = Field(1_048_576, ge=0)
    network_timeout_seconds: float = Field(60.0, gt=0)
    # Private SOP classes accepted besides every standard storage SOP class (retired included).
    extra_sop_classes: list[str] = Field(default_factory=list)

    @field_validator("extra_sop_classes")
    @classmethod
    def _sop_classes(cls, value: list[str]) -> list[str]:
        # PS3.5 9.1 grammar (config comes before dicom/ in the import order: spelled out here)
        bad = [i for i, v in enumerate(value) if len(v) > 64 or not _UID.fullmatch(v)]
        if bad:
            raise ValueError(f"extra_sop_classes[{bad[0]}] is not a valid DICOM UID")
        return value

    @field_validator("ae_title")
    @classmethod
    def _ae(cls, value: str) -> str:
        return _check_ae_title(value)

    @field_validator("allowed_calling_aes")
    @classmethod
    def _aes(cls, value: list[str]) -> list[str]:
        return [_check_ae_title(v) for v in value]

    @field_validator("allowed_networks")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for v in value:
            try:
                ipaddress.ip_network(v, strict=False)
            except ValueError as exc:
                raise ValueError(f"not an IP network (CIDR): {v!r}: {exc}") from None
        return value

    def networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        return [ipaddress.ip_network(v, strict=False) for v in self.allowed_networks]


class HttpConfig(_Model):
    """The HTTP side of the realtime service: STOW-RS, health, metrics, monitoring."""

    enabled: bool = True
    bind: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    # /health/ready fails below this much free space on the landing zone's filesystem.
    disk_free_threshold_mb: int = Field(1024, ge=0)
    # Base URL used in RetrieveURL attributes of STOW-RS responses (default: the request's).
    public_base_url: str | None = None
    # /metrics without credentials (Prometheus scrapers usually have none; no PHI in it).
    metrics_public: bool = True
    # Largest single STOW-RS part accepted, in MB.
    max_part_mb: int = Field(2048, ge=1)
    # Seconds an in-flight HTTP request / DICOM association may take to finish on shutdown.
    shutdown_grace_seconds: float = Field(30.0, ge=0)


class AuthConfig(_Model):
    """API keys (created with `axiom apikey create`, stored hashed) and HS256 JWT bearer tokens."""

    jwt_secret: str | None = None
    jwt_algorithm: str = Field("HS256", pattern=r"^HS(256|384|512)$")
    jwt_audience: str | None = None
    jwt_issuer: str | None = None

    @field_validator("jwt_secret")
    @classmethod
    def _secret_length(cls, value: str | None) -> str | None:
        if value is not None and value != "" and len(value) < 32:
            raise ValueError("jwt_secret must be at least 32 characters (HS256 key strength)")
        return value or None


def unique_listeners(value: list[DicomListener]) -> list[DicomListener]:
    for attr in ("name", "port"):
        seen = [getattr(listener, attr) for listener in value]
        dupes = sorted({str(n) for n in seen if seen.count(n) > 1 and n != 0})
        if dupes:
            raise ValueError(f"listener {attr}s must be unique; repeated: {', '.join(dupes)}")
    return value
