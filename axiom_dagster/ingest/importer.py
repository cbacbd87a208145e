"""`axiom land`: land the files of a folder tree, never hanging and never crashing on one input.

Only regular files are read (opened non-blocking and checked with fstat: a named pipe can
never block the import). Symbolic links inside the folder are skipped (their targets are
walked anyway); links leading outside it are followed only with `follow_symlinks`; dangling
links and loops are reported. Every input that cannot be landed is listed with its reason;
the ledger records each landed file's original path.
"""
from __future__ import annotations

import mmap
import os
import stat
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

from axiom_dagster.ingest.arrival import ArrivalMeta
from axiom_dagster.ingest.landing import InstanceIds, LandingZone, NotLandable, _write_atomically, read_instance_ids
from axiom_dagster.ingest.part10 import Unreadable, check_and_hash, part10_layout
from axiom_dagster.ingest.redaction import describe_exception

FLUSH_EVERY = 500


@dataclass(frozen=True)
class RejectedInput:
    """An input found while walking that is not read at all (not a regular file, a link)."""

    path: Path
    reason: str


@dataclass
class ImportReport:
    landed: int = 0
    bytes: int = 0
    rejected: list[tuple[Path, str]] = field(default_factory=list)
    skipped_links: int = 0


def iter_files(folder: Path, follow_symlinks: bool = False) -> Iterator[Path | RejectedInput]:
    """Every regular file below `folder` in a stable order (hidden names skipped), and a
    RejectedInput for each named pipe, socket, device, dangling link, loop or outside link."""
    root = Path(folder).resolve()
    seen: set[tuple[int, int]] = set()
    yield from _walk(Path(folder), root, follow_symlinks, seen)


def _walk(folder: Path, root: Path, follow: bool, seen: set) -> Iterator[Path | RejectedInput]:
    try:
        st = os.stat(folder)
        if (st.st_dev, st.st_ino) in seen:
            return  # reached twice (through a followed link): walked already
        seen.add((st.st_dev, st.st_ino))
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as exc:
        yield RejectedInput(folder, f"cannot list folder: {exc.strerror}")
        return
    for entry in entries:
        if entry.name.startswith("."):
            continue
        path = Path(entry.path)
        try:
            if entry.is_symlink():
                yield from _link(path, root, follow, seen)
            elif entry.is_dir(follow_symlinks=False):
                yield from _walk(path, root, follow, seen)
            elif entry.is_file(follow_symlinks=False):
                yield path
            else:
                yield RejectedInput(path, "not a regular file (named pipe, socket or device): skipped")
        except OSError as exc:
            yield RejectedInput(path, f"cannot inspect: {exc.strerror}")


def _link(path: Path, root: Path, follow: bool, seen: set) -> Iterator[Path | RejectedInput]:
    try:
        target = path.resolve(strict=True)
    except FileNotFoundError:
        yield RejectedInput(path, "dangling symbolic link")
        return
    except (RuntimeError, OSError):
        yield RejectedInput(path, "symbolic link loop")
        return
    if target == root or root in target.parents:
        yield RejectedInput(path, "symbolic link inside the folder: landed through its target")
    elif not follow:
        yield RejectedInput(path, "symbolic link leading outside the folder: not followed (use --follow-symlinks)")
    elif target.is_dir():
        yield from _walk(path, root, follow, seen)  # paths through the link: the original path
    elif target.is_file():
        yield path
    else:
        yield RejectedInput(path, "symbolic link to something that is not a regular file: skipped")


def import_files(zone: LandingZone, inputs: Iterable[Path | RejectedInput], meta: ArrivalMeta) -> ImportReport:
    """Land every input; the sources stay, so one os.sync() per chunk replaces per-file
    fsync. Rows already landed are flushed to the ledger and the import's association is
    closed even when something unexpected stops the import."""
    report = ImportReport()
    assoc_id = meta.association_id or f"import-{uuid.uuid4().hex}"
    meta = ArrivalMeta(
        source=meta.source, calling_ae=meta.calling_ae, called_ae=meta.called_ae,
        source_ip=meta.source_ip, association_id=assoc_id, received_at=meta.received_at,
    )
    zone.store.open_association(assoc_id, meta.source, meta.calling_ae, meta.called_ae, meta.source_ip)
    pending: list[dict] = []
    try:
        for item in inputs:
            if isinstance(item, RejectedInput):
                if item.reason.startswith("symbolic link inside"):
                    report.skipped_links += 1
                else:
                    _reject(zone, report, item.path, item.reason, meta)
                continue
            try:
                values = _land_one(zone, Path(item), meta)
            except NotLandable as exc:
                _reject(zone, report, Path(item), str(exc), meta)
                continue
            pending.append(values)
            report.landed += 1
            report.bytes += values["size"]
            if len(pending) >= FLUSH_EVERY:
                _flush(zone, pending)
    finally:
        _flush(zone, pending)
        zone.store.close_association(assoc_id, report.landed)
    return report


def _land_one(zone: LandingZone, path: Path, meta: ArrivalMeta) -> dict:
    """Check one file (regular, DICOM, identifying UIDs valid, data set complete), copy it
    into the landing zone under its hash; return its ledger values (not yet flushed)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise NotLandable(f"cannot open: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotLandable("not a regular file: skipped")
        if st.st_size == 0:
            raise NotLandable("empty file")
        with mmap.mmap(fd, 0, access=mmap.ACCESS_READ) as mm:
            try:
                offset, syntax = part10_layout(mm[:65536])
            except Unreadable as exc:
                raise NotLandable(str(exc)) from None
            ids = read_instance_ids(mm)
            sha, problem = check_and_hash(mm, offset, syntax)
        if problem:
            raise NotLandable(f"data set does not parse to its end: {problem}")
        arrival_date = meta.received_at.strftime("%Y-%m-%d")
        final = zone.path_for(ids, arrival_date, sha)
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.exists():
            size = final.stat().st_size
        else:
            size = _write_atomically(final, lambda fh: _copy(fd, fh, st.st_size), sync=False)
    except OSError as exc:
        raise NotLandable(f"cannot read or copy: {describe_exception(exc, 120)}") from None
    finally:
        os.close(fd)
    values = zone._ledger_values(ids, final, size, meta, arrival_date)
    return {**values, "sha256": sha, "original_path": str(path.absolute())}


def _copy(fd: int, fh, size: int) -> None:
    offset = 0
    while offset < size:  # sendfile may copy less than asked (large files)
        sent = os.sendfile(fh.fileno(), fd, offset, size - offset)
        if sent == 0:
            raise OSError("source file shrank while being copied")
        offset += sent


def _reject(zone: LandingZone, report: ImportReport, path: Path, reason: str, meta: ArrivalMeta) -> None:
    report.rejected.append((path, reason))
    zone._quarantine_unlandable(path, reason, meta)


def _flush(zone: LandingZone, pending: list[dict]) -> None:
    if pending:
        os.sync()
        zone.store.append_ledger_many(pending)
        pending.clear()


__all__ = ["ImportReport", "InstanceIds", "RejectedInput", "import_files", "iter_files"]
