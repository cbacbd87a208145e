"""STOW-RS (PS3.18 10.5): a streaming multipart/related parser and the landing of its parts.

The body is never held in memory: python-multipart's push parser writes each part to a temp
file as the request streams in. Only after the whole body parsed cleanly are the parts landed,
so a malformed body lands nothing.
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from python_multipart.multipart import MultipartParser, parse_options_header
from sqlalchemy.exc import SQLAlchemyError

from axiom_dagster.ingest.arrival import ArrivalMeta
from axiom_dagster.ingest.landing import InstanceIds, LandingZone
from axiom_dagster.dicom.uids import InvalidUID

from axiom_dagster.ingest.part10 import check_file_and_hash

from axiom_dagster.ingest.rawheader import Unreadable, part10_ids, part10_prefix
from .metrics import Metrics

log = logging.getLogger("axiom.realtime.stow")

FAILURE_OUT_OF_RESOURCES = 0xA700
FAILURE_DATASET_MISMATCH = 0xA900
FAILURE_CANNOT_UNDERSTAND = 0xC000
FAILURE_PROCESSING = 0x0110
SOURCE = "stow-rs"


class BadRequest(ValueError):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass
class Part:
    path: Path
    headers: dict[str, str] = field(default_factory=dict)
    size: int = 0

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "application/dicom")


def check_content_type(header: str | None) -> bytes:
    """The boundary of a `multipart/related; type="application/dicom"` body, else BadRequest."""
    if not header:
        raise BadRequest(415, "Content-Type must be multipart/related; type=\"application/dicom\"")
    ctype, params = parse_options_header(header)
    if ctype.lower() != b"multipart/related":
        raise BadRequest(415, f"unsupported media type {ctype.decode(errors='replace')!r}; "
                              "use multipart/related; type=\"application/dicom\"")
    part_type = params.get(b"type", b"application/dicom").strip(b'"').lower()
    if part_type != b"application/dicom":
        raise BadRequest(415, f"unsupported multipart type {part_type.decode(errors='replace')!r}; "
                              "only application/dicom parts are accepted")
    boundary = params.get(b"boundary")
    if not boundary:
        raise BadRequest(400, "multipart/related body without a boundary parameter")
    return boundary.strip(b'"')


class StreamingParts:
    """Feed request chunks with `write`; parts land in temp files under `spool`."""

    def __init__(self, boundary: bytes, spool: Path, max_part_bytes: int):
        self.spool = spool
        self.max_part_bytes = max_part_bytes
        self.parts: list[Part] = []
        self.finished = False
        self._fh = None
        self._hname = b""
        self._hvalue = b""
        self._error: str | None = None
        self._parser = MultipartParser(boundary, {
            "on_part_begin": self._begin,
            "on_part_data": self._data,
            "on_part_end": self._end,
            "on_header_field": self._hfield,
            "on_header_value": self._hval,
            "on_header_end": self._hend,
            "on_end": self._done,
        })

    def _begin(self):
        path = self.spool / f"part{len(self.parts):05d}"
        self.parts.append(Part(path))
        self._fh = open(path, "wb")

    def _data(self, data, start, end):
        part = self.parts[-1]
        part.size += end - start
        if part.size > self.max_part_bytes:
            self._error = f"part {len(self.parts)} is larger than the limit of {self.max_part_bytes} bytes"
            return
        self._fh.write(data[start:end])

    def _end(self):
        if self._fh:
            self._fh.close()
            self._fh = None

    def _hfield(self, data, start, end):
        self._hname += data[start:end]

    def _hval(self, data, start, end):
        self._hvalue += data[start:end]

    def _hend(self):
        self.parts[-1].headers[self._hname.decode("latin-1").strip().lower()] = self._hvalue.decode("latin-1").strip()
        self._hname, self._hvalue = b"", b""

    def _done(self):
        self.finished = True

    def write(self, chunk: bytes) -> None:
        try:
            self._parser.write(chunk)
        except Exception as exc:  # MultipartParseError and friends
            self.close()
            raise BadRequest(400, f"malformed multipart body: {exc}") from None
        if self._error:
            self.close()
            raise BadRequest(413, self._error)

    def finish(self) -> list[Part]:
        self.close()
        if not self.finished:
            raise BadRequest(400, "malformed multipart body: the closing boundary is missing "
                                  "(truncated body or wrong boundary)")
        if not self.parts:
            raise BadRequest(400, "multipart body has no parts")
        return self.parts

    def close(self):
        if self._fh:
            self._fh.close()
            self._fh = None


@dataclass
class Outcome:
    stored: list[dict] = field(default_factory=list)
    failed: list[dict] = field(default_factory=list)
    study_uids: set[str] = field(default_factory=set)


def land_parts(zone: LandingZone, metrics: Metrics, parts: list[Part], url_study: str | None,
               client_ip: str | None, request_id: str) -> Outcome:
    """Land every part that is a readable DICOM instance (of the URL's study, if given)."""
    out = Outcome()
    assoc_id = f"stow-{request_id}"
    zone.store.open_association(assoc_id, SOURCE, None, None, client_ip)
    try:
        for i, part in enumerate(parts):
            _land_one(zone, metrics, part, i, url_study, client_ip, assoc_id, out)
    finally:
        zone.store.close_association(assoc_id, len(out.stored))
    return out


def _land_one(zone, metrics, part: Part, index: int, url_study, client_ip, assoc_id, out: Outcome) -> None:
    started = time.perf_counter()

    def fail(code: int, reason: str, detail: str, ids: InstanceIds | None = None):
        metrics.failures.inc(listener=SOURCE, reason=reason)
        log.warning("STOW-RS part refused", extra={"part": index + 1, "reason": reason,
                                                   "failure": f"0x{code:04X}", "detail": detail[:200]})
        out.failed.append({"sop_class": ids.sop_class_uid if ids else None,
                           "sop": ids.sop_uid if ids else None, "code": code, "detail": detail})

    def keep(reason: str, ids: InstanceIds | None = None) -> None:
        """Refused parts are kept in quarantine/landing, byte for byte as sent."""
        try:
            zone.quarantine_refused(lambda fh: fh.write(part.path.read_bytes()), reason, source=SOURCE, ids=ids)
        except Exception:  # the part's failure must still be reported
            log.exception("could not quarantine a refused STOW-RS part", extra={"part": index + 1})

    ctype = part.content_type.split(";")[0].strip().lower()
    if ctype != "application/dicom":
        return fail(FAILURE_CANNOT_UNDERSTAND, "wrong_part_type", f"part media type {ctype!r} is not application/dicom")
    try:
        ids, offset = part10_ids(part.path)
    except (Unreadable, InvalidUID) as exc:
        keep(str(exc))
        return fail(FAILURE_CANNOT_UNDERSTAND, "unreadable" if isinstance(exc, Unreadable) else "invalid_uid", str(exc))
    if url_study and ids.study_uid != url_study:
        keep("StudyInstanceUID of the instance differs from the one in the request URL", ids)
        return fail(FAILURE_DATASET_MISMATCH, "study_mismatch",
                    "StudyInstanceUID of the instance differs from the one in the request URL", ids)
    prefix = part10_prefix(ids.sop_class_uid or "1.2.840.10008.5.1.4.1.1.7", ids.sop_uid, ids.transfer_syntax_uid)

    def write(fh) -> None:
        fh.write(prefix)
        fh.flush()
        with open(part.path, "rb") as src:
            size = os.fstat(src.fileno()).st_size
            os.sendfile(fh.fileno(), src.fileno(), offset, size - offset)

    sha, problem = check_file_and_hash(part.path, offset, ids.transfer_syntax_uid)
    if problem:
        reason = f"data set does not parse to its end: {problem}"
        keep(reason, ids)
        return fail(FAILURE_CANNOT_UNDERSTAND, "incomplete", reason, ids)
    meta = ArrivalMeta(source=SOURCE, source_ip=client_ip, association_id=assoc_id,
                       received_at=datetime.now(timezone.utc))
    try:
        zone.land(ids, write, meta, sha256=sha)
    except OSError as exc:
        return fail(FAILURE_OUT_OF_RESOURCES, "io_error", f"cannot write: {exc.strerror}", ids)
    except SQLAlchemyError as exc:
        return fail(FAILURE_OUT_OF_RESOURCES, "state_store", f"ledger unavailable: {type(exc).__name__}", ids)
    size = len(prefix) + part.size - offset
    metrics.instances.inc(listener=SOURCE)
    metrics.bytes.inc(size, listener=SOURCE)
    metrics.landing_seconds.observe(time.perf_counter() - started, listener=SOURCE)
    out.stored.append({"sop_class": ids.sop_class_uid, "sop": ids.sop_uid, "study": ids.study_uid,
                       "series": ids.series_uid})
    out.study_uids.add(ids.study_uid)


def response_json(out: Outcome, base_url: str) -> dict:
    def ui(v):
        return {"vr": "UI", "Value": [v]} if v else {"vr": "UI"}

    body: dict = {}
    if len(out.study_uids) == 1:
        body["00081190"] = {"vr": "UR", "Value": [f"{base_url}/studies/{next(iter(out.study_uids))}"]}
    if out.failed:
        body["00081198"] = {"vr": "SQ", "Value": [
            {"00081150": ui(f["sop_class"]), "00081155": ui(f["sop"]), "00081197": {"vr": "US", "Value": [f["code"]]},
             "00000902": {"vr": "LO", "Value": [f["detail"][:64]]}}
            for f in out.failed]}
    if out.stored:
        body["00081199"] = {"vr": "SQ", "Value": [
            {"00081150": ui(s["sop_class"]), "00081155": ui(s["sop"]),
             "00081190": {"vr": "UR", "Value": [
                 f"{base_url}/studies/{s['study']}/series/{s['series']}/instances/{s['sop']}"]}}
            for s in out.stored]}
    return body


def http_status(out: Outcome) -> int:
    if not out.failed:
        return 200
    return 202 if out.stored else 409


def new_spool(landing_root: Path) -> Path:
    """A private temp folder on the landing zone's filesystem (cheap copies, same disk checks)."""
    base = landing_root / ".stow-spool"
    base.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=uuid.uuid4().hex[:8], dir=base))


def drop_spool(spool: Path) -> None:
    shutil.rmtree(spool, ignore_errors=True)
