"""Per-instance work done inside the pipeline's worker processes: read once, validate,
morph, write each destination's copy, and return small result records.

Imports only pydicom and the domain core, so worker processes start quickly.
"""
from __future__ import annotations

import gc
import hashlib
import io
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from pydicom import Dataset, dcmread

from axiom_dagster.catalog.extract import instance_row
from axiom_dagster.catalog.fast_extract import fast_instance_row
from axiom_dagster.dicom.header_dataset import header_dataset
from axiom_dagster.dicom.header_reader import RawHeader, read_header_bytes
from axiom_dagster.ingest.arrival import ArrivalMeta
from axiom_dagster.ingest.page_cache import read_and_release
from axiom_dagster.rules.morph import Morpher, PassThrough
from axiom_dagster.destinations.paths import render_path
from axiom_dagster.ingest.quarantine import quarantine_file
from axiom_dagster.ingest.redaction import describe_exception, install_log_redaction
from axiom_dagster.store.records import LedgerRow
from axiom_dagster.pipeline.validation import validate_instance


@dataclass(frozen=True)
class RouteTarget:
    name: str
    root: Path
    path_template: str
    link_unchanged: bool = False


@dataclass(frozen=True)
class WorkerSettings:
    targets: tuple[RouteTarget, ...]
    quarantine_root: Path
    batch_id: int
    run_id: str
    # Builds the morpher inside each worker (rule engines are compiled once per process).
    morpher_factory: Callable[[], Morpher] = PassThrough


@dataclass
class InstanceResult:
    ledger_id: int
    study_uid: str
    sop_uid: str
    bytes: int = 0
    catalog_row: dict | None = None
    deliveries: list[dict] = field(default_factory=list)
    exception: dict | None = None
    matched_rules: list[str] = field(default_factory=list)
    lookup_misses: list[tuple[str, str, str, str]] = field(default_factory=list)
    # winner | superseded | failed (see pipeline.arrivals); winner_ledger_id for superseded
    decision: str = "winner"
    winner_ledger_id: int | None = None
    # destination -> SHA-256 of the file written there (the audit log's instance routes)
    content_hashes: dict[str, str] = field(default_factory=dict)


_MORPHERS: dict[bytes, Morpher] = {}


def morpher_for(factory: Callable[[], Morpher]) -> Morpher:
    """The morpher built by `factory`, built once per process.

    Chunks arrive unpickled, so the cache is keyed by the factory's pickle. The run process
    calls this before starting the pool: forked workers inherit the compiled rules.
    """
    key = pickle.dumps(factory)
    if key not in _MORPHERS:
        _MORPHERS[key] = factory()
    return _MORPHERS[key]


def start_worker() -> None:
    """A worker process's initializer: what a forked worker inherits from the run process (its
    Dagster, SQLAlchemy and pydicom objects) is left out of the worker's garbage collections,
    which otherwise walk all of it (and copy its pages) every few hundred instances."""
    gc.freeze()


def process_chunk(groups: list[list[LedgerRow]], settings: WorkerSettings) -> list[InstanceResult]:
    install_log_redaction()  # spawned workers (start_method spawn/forkserver) start without it
    morpher = morpher_for(settings.morpher_factory)
    out: list[InstanceResult] = []
    for group in groups:
        out += process_group(group, settings, morpher)
    return out


def process_group(candidates: list[LedgerRow], settings: WorkerSettings, morpher: Morpher) -> list[InstanceResult]:
    """The arrivals of one SOP Instance UID, in preference order: the first that reads and
    validates wins; one that does not is quarantined and the next is tried; the rest are
    superseded (kept in the landing zone and the ledger, not processed)."""
    results: list[InstanceResult] = []
    for i, row in enumerate(candidates):
        result = process_instance(row, settings, morpher)
        results.append(result)
        if result.exception and result.exception["stage"] == "validate" and i + 1 < len(candidates):
            result.decision = "failed"
            continue
        results += [
            InstanceResult(r.id, r.study_uid, r.sop_uid, decision="superseded", winner_ledger_id=row.id)
            for r in candidates[i + 1:]
        ]
        break
    return results


def process_instance(row: LedgerRow, settings: WorkerSettings, morpher: Morpher) -> InstanceResult:
    """Read, validate, morph, route and catalog one arrival. Never raises: whatever goes wrong
    (a value pydicom cannot convert, a rule that fails, a catalog value) quarantines this
    instance with a reason naming the stage and problem, never an element value."""
    result = InstanceResult(row.id, row.study_uid, row.sop_uid)
    stage = "validate"
    try:
        try:
            data = read_and_release(row.path)  # the pipeline's is the landed file's last planned read
        except FileNotFoundError:
            return quarantine(result, row, settings, stage, "landed file is missing")
        result.bytes = len(data)
        header = _raw_header(data)
        if header is not None and getattr(morpher, "copies_unchanged", False):
            # Nothing will be re-encoded: the raw header's elements are all the steps read.
            ds, ds_from_header = header_dataset(header, data), True
        else:
            ds_from_header = False
            try:
                ds = dcmread(io.BytesIO(data))
            except Exception as exc:
                return quarantine(result, row, settings, stage, f"unreadable DICOM: {describe_exception(exc)}")
        problems = validate_instance(ds, expected_sop_uid=row.sop_uid, header=header if ds_from_header else None)
        if problems:
            return quarantine(result, row, settings, stage, "; ".join(problems))

        stage = "morph"
        meta = ArrivalMeta(
            source=row.source, calling_ae=row.calling_ae, called_ae=row.called_ae,
            source_ip=row.source_ip, association_id=row.association_id, received_at=row.received_at,
        )
        outcome = morpher.morph(ds, meta, [t.name for t in settings.targets])
        result.matched_rules = outcome.matched_rules
        result.lookup_misses = outcome.lookup_misses
        if outcome.quarantine_reason:
            return quarantine(result, row, settings, stage, outcome.quarantine_reason)

        stage = "route"
        targets = {t.name: t for t in settings.targets}
        for copy in outcome.copies:
            target = targets[copy.destination]
            try:
                location, result.content_hashes[copy.destination] = _write(
                    target, copy.dataset, None if copy.changed else data, row.path)
                result.deliveries.append(_delivery(row, settings, copy.destination, "delivered", str(location)))
            except Exception as exc:
                result.deliveries.append(
                    _delivery(row, settings, copy.destination, "failed", None, describe_exception(exc, 500))
                )

        stage = "catalog"
        delivered = [d["destination"] for d in result.deliveries if d["status"] == "delivered"]
        result.catalog_row = catalog_row(data, ds, row, settings, delivered, header)
    except Exception as exc:
        result.catalog_row = None
        return quarantine(result, row, settings, stage, f"{stage} failed: {describe_exception(exc)}")
    return result


def quarantine(result: InstanceResult, row: LedgerRow, settings: WorkerSettings, stage: str, reason: str) -> InstanceResult:
    """Keep a copy of the arrival under quarantine/<stage>/ with its reason, and the exception
    row for the state store. A copy that cannot be made (file gone) still leaves the row."""
    reason = reason[:500]
    target = None
    try:
        target = quarantine_file(
            settings.quarantine_root, stage, Path(row.path), reason,
            name=f"ledger-{row.id}.dcm", overwrite=True, ledger_id=row.id, study_uid=row.study_uid,
        )
    except OSError as exc:
        reason = f"{reason} (no copy kept: {describe_exception(exc, 120)})"
    result.exception = dict(
        stage=stage, reason=reason, ledger_id=row.id, study_uid=row.study_uid,
        sop_uid=row.sop_uid, quarantine_path=str(target) if target else None,
        batch_id=settings.batch_id, run_id=settings.run_id,
    )
    return result


def _write(target: RouteTarget, ds: Dataset, unchanged: bytes | None, landed: str) -> tuple[Path, str]:
    """Write atomically (temp + rename); an unchanged instance is copied byte for byte, or
    hard-linked to its `landed` file where the target links. Returns the path and the
    SHA-256 of what was written."""
    final = render_path(target.root, target.path_template, ds)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
    if unchanged is not None:
        linked = target.link_unchanged and _hard_link(landed, tmp)
        if not linked:
            tmp.write_bytes(unchanged)
        digest = hashlib.sha256(unchanged).hexdigest()
    else:
        linked = False
        ds.save_as(tmp, enforce_file_format=True)
        with open(tmp, "rb") as written:
            digest = hashlib.file_digest(written, "sha256").hexdigest()
    os.replace(tmp, final)
    if linked:  # a re-run: rename(2) leaves both names when they are links to one inode
        tmp.unlink(missing_ok=True)
    return final, digest


def _hard_link(landed: str, tmp: Path) -> bool:
    """A hard link at `tmp` to the landed file; False where none can be made (another
    filesystem, one without hard links, the inode's link limit): the caller copies."""
    try:
        try:
            os.link(landed, tmp)
        except FileExistsError:  # a temp left by a killed run
            tmp.unlink()
            os.link(landed, tmp)
    except OSError:
        return False
    return True


def _delivery(row: LedgerRow, settings: WorkerSettings, destination: str, status: str, location, error=None) -> dict:
    return dict(
        ledger_id=row.id, destination=destination, study_uid=row.study_uid, sop_uid=row.sop_uid,
        status=status, location=location, error=error, batch_id=settings.batch_id, run_id=settings.run_id,
    )


def _raw_header(data: bytes) -> RawHeader | None:
    """The file's top-level elements read raw, or None where pydicom reads it its own way."""
    try:
        return read_header_bytes(data)
    except Exception:  # Fallback, or anything the raw reader did not foresee
        return None


def catalog_row(data: bytes, ds: Dataset, row: LedgerRow, settings: WorkerSettings, destinations: list[str],
                header: RawHeader | None = None) -> dict:
    """The instance's catalog row, as received: from its raw header (a third of the cost of
    pydicom's row, the same row: tests/catalog/test_fast_extract.py), from pydicom's reading
    of the file where the raw reader leaves the file to pydicom. `header` is the file's raw
    header when the caller read it already."""
    provenance = dict(batch_id=settings.batch_id, run_id=settings.run_id, status="routed", destinations=destinations)
    try:
        return fast_instance_row(header if header is not None else read_header_bytes(data), row, **provenance)
    except Exception:  # Fallback, or anything the raw reader did not foresee: pydicom's row
        if header is not None:  # ds may be header_dataset's: the row is pydicom's reading of the file
            ds = dcmread(io.BytesIO(data))
        return instance_row(ds, row, **provenance)
