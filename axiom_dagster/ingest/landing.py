"""The landing zone: every ingest path ends here.

An instance is landed when its file is on disk under its final name (temp file, rename,
synced) and its row is in the arrival ledger. Receivers acknowledge only after that.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from pydicom import dcmread
from pydicom.errors import InvalidDicomError

from axiom_dagster.ingest.arrival import ArrivalMeta
from axiom_dagster.ingest.fs_sync import FilesystemSync
from axiom_dagster.ingest.group_commit import GroupCommit, fdatasync_path, fsync_dir
from axiom_dagster.ingest.part10 import Unreadable, part10_layout
from axiom_dagster.ingest.quarantine import quarantine_file, quarantine_write
from axiom_dagster.ingest.redaction import describe_exception
from axiom_dagster.store.state import StateStore
from axiom_dagster.dicom.uids import InvalidUID, require_uid

HEADER_TAGS = ["StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID"]


@dataclass(frozen=True)
class InstanceIds:
    study_uid: str
    series_uid: str
    sop_uid: str
    sop_class_uid: str | None = None
    transfer_syntax_uid: str | None = None

    @classmethod
    def validated(cls, study, series, sop, sop_class=None, transfer_syntax=None) -> "InstanceIds":
        return cls(
            require_uid(study, "StudyInstanceUID"),
            require_uid(series, "SeriesInstanceUID"),
            require_uid(sop, "SOPInstanceUID"),
            require_uid(sop_class, "SOPClassUID") if sop_class else None,
            require_uid(transfer_syntax, "TransferSyntaxUID") if transfer_syntax else None,
        )


class NotLandable(ValueError):
    """The input cannot be landed (not DICOM, or its identifying UIDs are missing/invalid)."""


def read_instance_ids(path_or_file) -> InstanceIds:
    """Read and validate the identifying UIDs of a Part 10 file without its pixel data.

    Every failure (not DICOM, a damaged header, a value pydicom cannot convert, an invalid
    UID) is NotLandable with a reason that names the problem, never a value.
    """
    try:
        ds = dcmread(path_or_file, stop_before_pixels=True, specific_tags=HEADER_TAGS)
        meta = getattr(ds, "file_meta", None)
        return InstanceIds.validated(
            ds.get("StudyInstanceUID"),
            ds.get("SeriesInstanceUID"),
            ds.get("SOPInstanceUID"),
            ds.get("SOPClassUID"),
            meta.get("TransferSyntaxUID") if meta is not None else None,
        )
    except InvalidDicomError:
        raise NotLandable("not a DICOM Part 10 file") from None
    except InvalidUID as exc:
        raise NotLandable(str(exc)) from None
    except Exception as exc:  # pydicom raises many types on damaged headers
        raise NotLandable(f"unreadable DICOM header: {describe_exception(exc)}") from None


SYNC_MODES = ("filesystem", "file")


class LandingZone:
    """`sync`: how landed files are made durable (ingest/group_commit.py): "filesystem", one
    syncfs per group commit (falls back to "file" where syncfs is missing), or "file", one
    fdatasync per file and one fsync per folder."""

    def __init__(self, root: Path, quarantine_root: Path, store: StateStore, sync: str = "filesystem"):
        if sync not in SYNC_MODES:
            raise ValueError(f"sync must be one of {SYNC_MODES}")
        self.root = Path(root)
        self.quarantine_root = Path(quarantine_root)
        self.store = store
        # Folders whose entry in their parent is known durable (created and parent fsynced by
        # us, or found existing): mkdir + parent fsync happen once per folder, not per instance.
        self._durable_dirs: set[Path] = set()
        # Files and rows of concurrent receivers are flushed together (ingest.group_commit).
        fs = FilesystemSync(self.root) if sync == "filesystem" and FilesystemSync.available() else None
        self._group = GroupCommit(store, fs)

    @classmethod
    def for_config(cls, config, store: StateStore) -> "LandingZone":
        """The landing zone an AxiomConfig describes (its paths and `landing.sync`)."""
        return cls(config.landing_path, config.quarantine_path, store, sync=config.landing.sync)

    def close(self) -> None:
        """Release the group commit's ledger connection and the synced filesystem's descriptor."""
        self._group.close()
        if self._group.fs is not None:
            self._group.fs.close()

    @property
    def syncs_filesystem(self) -> bool:
        """Whether a group's files are synced by one syncfs: a receiver then need not
        fdatasync its own file first (land_file's `synced` would be wasted work)."""
        return self._group.fs is not None

    def sync_written(self, paths: list[Path], threads: int = 4) -> None:
        """Make files already under their final names durable, with their folders (the
        renames): one syncfs when the zone syncs a filesystem that holds all their folders,
        else an fdatasync each (from a few threads: they wait on the disk and share journal
        commits) and an fsync per folder."""
        fs = self._group.fs
        folders = {p.parent for p in paths}
        if fs is not None and all(fs.covers(folder) for folder in folders):
            fs.sync()
            return
        with ThreadPoolExecutor(max(1, min(threads, len(paths)))) as pool:
            list(pool.map(fdatasync_path, paths))
        for folder in folders:
            fsync_dir(folder)

    def path_for(self, ids: InstanceIds, arrival_date: str, sha256: str | None = None) -> Path:
        """Each arrival under its own name: the data set's hash (identical re-sends share one
        file), or a random token when no hash is given. Nothing landed is overwritten.
        UIDs were validated by InstanceIds.validated: digits and dots only."""
        token = sha256[:20] if sha256 else uuid.uuid4().hex[:20]
        return self.root / arrival_date / ids.study_uid / f"{ids.sop_uid}.{token}.dcm"

    def land(self, ids: InstanceIds, write: Callable[[object], None], meta: ArrivalMeta, *,
             sha256: str | None = None, original_path: str | None = None) -> int:
        """Write one instance with `write(fileobj)`, make it durable, append the ledger row.

        Returns the ledger id; the caller acknowledges the instance only after that. The
        caller has checked that the data set parses to its end (ingest.part10.check_complete)
        and passes its hash: a file with that hash already landed is not written again.
        """
        return self._land(ids, meta, sha256, original_path, lambda final: _write_temp(final, write))

    def land_file(self, ids: InstanceIds, src: Path, meta: ArrivalMeta, *, sha256: str, synced: bool = False) -> int:
        """Land a complete Part 10 file written elsewhere (a receiver's spool file) by moving
        it into place: no copy on the same filesystem, a kernel-side copy across filesystems.
        `src` is gone afterwards (moved, or removed when an identical file had landed).
        `synced`: the caller has fdatasync'ed `src` (receiver threads do it in parallel,
        before joining the group commit)."""
        def place(final: Path) -> Path:
            if os.stat(src).st_dev == os.stat(final.parent).st_dev:
                return src
            try:  # another filesystem: rename cannot move it there
                return _copy_temp(src, final)
            finally:
                src.unlink(missing_ok=True)

        try:
            return self._land(ids, meta, sha256, None, place, synced_file=src if synced else None)
        finally:
            src.unlink(missing_ok=True)  # only still there if identical bytes had landed

    def _land(self, ids: InstanceIds, meta: ArrivalMeta, sha256: str | None, original_path: str | None,
              make_temp: Callable[[Path], Path], synced_file: Path | None = None) -> int:
        arrival_date = meta.received_at.strftime("%Y-%m-%d")
        final = self.path_for(ids, arrival_date, sha256)
        self._ensure_dir(final.parent)
        if sha256 and final.exists() and self._intact(final, sha256):
            size = final.stat().st_size  # identical data set landed before: keep that file
            return self._group.append(self._row(ids, final, size, meta, arrival_date, sha256, original_path), final)
        try:
            tmp = make_temp(final)
        except FileNotFoundError:  # folder removed behind our back (cleanup): make it again
            self._durable_dirs.clear()
            self._ensure_dir(final.parent)
            tmp = make_temp(final)
        try:
            size = tmp.stat().st_size
            row = self._row(ids, final, size, meta, arrival_date, sha256, original_path)
            try:
                return self._group.commit(row, tmp, final, synced=tmp == synced_file)
            except FileNotFoundError:
                if not tmp.exists():
                    raise
                self._durable_dirs.clear()  # removed between the temp file and the rename
                self._ensure_dir(final.parent)
                return self._group.commit(row, tmp, final, synced=tmp == synced_file)
        except BaseException:
            if tmp.exists() and tmp != final:
                tmp.unlink(missing_ok=True)
            raise

    def _intact(self, final: Path, sha256: str) -> bool:
        """Whether a file found under a final name holds the data set it is named after.
        With syncfs, files are renamed before they are synced: after a power loss a final
        name may hold incomplete data (no ledger row points to it: rows are committed after
        the sync). Such a file is replaced by the new arrival, never relied on."""
        if not self.syncs_filesystem:
            return True  # file by file: synced before its rename
        try:
            with open(final, "rb") as fh:
                offset, _ = part10_layout(fh.read(1 << 16))
                fh.seek(offset)
                return hashlib.file_digest(fh, "sha256").hexdigest() == sha256
        except (OSError, Unreadable):
            return False

    def _row(self, ids, final, size, meta, arrival_date, sha256, original_path) -> dict:
        values = self._ledger_values(ids, final, size, meta, arrival_date)
        return {**values, "sha256": sha256, "original_path": original_path}

    def _ensure_dir(self, folder: Path) -> None:
        """mkdir -p `folder` below the root, each level's entry in its parent fsynced once per
        process (a new study folder must not vanish after a crash with the acknowledged files
        in it), then remembered so later instances skip mkdir and fsync."""
        if folder in self._durable_dirs:
            return
        levels = [folder, *folder.parents]
        levels = levels[: levels.index(self.root) + 1] if self.root in levels else [folder]
        for d in reversed(levels):
            if d in self._durable_dirs:
                continue
            d.mkdir(parents=True, exist_ok=True)
            _fsync_dir(d.parent)  # also for a folder found existing: made by whom, synced?
            if len(self._durable_dirs) > 100_000:
                self._durable_dirs.clear()  # bounded memory; a miss costs one mkdir + fsync
            self._durable_dirs.add(d)

    def import_files(self, paths: Iterable, meta: ArrivalMeta) -> "ImportReport":
        """Land existing files (e.g. `axiom land <folder>`); see ingest.importer."""
        from axiom_dagster.ingest.importer import import_files

        return import_files(self, paths, meta)

    def quarantine_refused(self, write: Callable[[object], None], reason: str, *, source: str,
                           ids: InstanceIds | None = None) -> Path:
        """Keep bytes a receiver refuses (not acknowledged: e.g. a data set cut short) in
        quarantine/landing/ with the reason and an exception row. Returns the copy's path."""
        def to_file(tmp: Path) -> None:
            with open(tmp, "wb") as fh:
                write(fh)
                fh.flush()
                os.fdatasync(fh.fileno())

        target = quarantine_write(self.quarantine_root, "landing", to_file, reason,
                                  name=f"{uuid.uuid4().hex}.dcm", source=source)
        self.store.record_exceptions([{
            "stage": "landing", "reason": reason, "quarantine_path": str(target),
            "study_uid": ids.study_uid if ids else None, "sop_uid": ids.sop_uid if ids else None,
        }])
        return target

    def _quarantine_unlandable(self, path: Path, reason: str, meta: ArrivalMeta) -> None:
        target = None
        if path.is_file():
            target = quarantine_file(self.quarantine_root, "landing", path, reason, name=f"{uuid.uuid4().hex}-{path.name}")
        self.store.record_exceptions([{
            "stage": "landing", "reason": reason, "quarantine_path": str(target) if target else None,
        }])

    @staticmethod
    def _ledger_values(ids: InstanceIds, path: Path, size: int, meta: ArrivalMeta, arrival_date: str) -> dict:
        return dict(
            received_at=meta.received_at, arrival_date=arrival_date,
            study_uid=ids.study_uid, series_uid=ids.series_uid, sop_uid=ids.sop_uid,
            sop_class_uid=ids.sop_class_uid, transfer_syntax_uid=ids.transfer_syntax_uid,
            path=str(path), size=size, source=meta.source, calling_ae=meta.calling_ae,
            called_ae=meta.called_ae, source_ip=meta.source_ip, association_id=meta.association_id,
        )


def _write_atomically(final: Path, write: Callable[[object], None], *, sync: bool) -> int:
    """Write to a temp file beside `final`, optionally fdatasync it, rename it into place;
    return the size. A failure leaves no file behind."""
    tmp = _write_temp(final, write)
    try:
        if sync:
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fdatasync(fd)
            finally:
                os.close(fd)
        size = tmp.stat().st_size
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return size


def _temp_name(final: Path) -> Path:
    return final.with_name(f".{final.name}.{uuid.uuid4().hex}.tmp")


def _write_temp(final: Path, write: Callable[[object], None]) -> Path:
    """`write` into a new temp file beside `final` (not synced yet); none left on failure."""
    tmp = _temp_name(final)
    try:
        with open(tmp, "wb") as fh:
            write(fh)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def _copy_temp(src: Path, final: Path) -> Path:
    """A temp copy of `src` beside `final`, copied by the kernel (bounded memory)."""
    tmp = _temp_name(final)
    try:
        shutil.copyfile(src, tmp)  # sendfile / copy_file_range on Linux
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


_fsync_dir = fsync_dir
