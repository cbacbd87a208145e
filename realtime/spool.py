"""The spool of the C-STORE listeners: each data set is written to a file in this process's
spool folder as it arrives (bounded memory for any size), on the landing zone's filesystem,
so that landing it is a rename (realtime/dimse.py lands it)."""
from __future__ import annotations

import itertools
import os
import re
import shutil
from pathlib import Path

from axiom_dagster.ingest.rawheader import encode_file_meta
from axiom_dagster.pipeline.recovery import process_alive

SPOOL = ".dimse-spool"
PREAMBLE = b"\x00" * 128 + b"DICM"  # PS3.10 7.1
CHECK_IN_MEMORY = 8 << 20  # data sets up to this size are checked and hashed from memory


def dimse_spool(landing_root: Path) -> Path:
    """This process's folder for data sets being received; the folders of processes that are
    gone (killed mid-transfer) are removed: what is in them was never acknowledged."""
    base = Path(landing_root) / SPOOL
    base.mkdir(parents=True, exist_ok=True)
    for folder in base.iterdir():
        if folder.name.isdigit() and int(folder.name) != os.getpid() and not process_alive(int(folder.name)):
            shutil.rmtree(folder, ignore_errors=True)
    mine = base / str(os.getpid())
    mine.mkdir(exist_ok=True)
    return mine


class SpoolWriter:
    """One data set as it arrives: our File Meta Information (design section 3: the receiver
    writes it), then the data set bytes as sent, in a file in this process's spool folder (on
    the landing zone's filesystem, so landing is a rename). A data set up to CHECK_IN_MEMORY
    is also kept in memory to be checked without reading it back; a larger one never is."""

    def __init__(self, service, state, sop_class: str, sop_instance: str, ts: str):
        self.service, self.state = service, state
        self.sop_class, self.sop_instance, self.ts = sop_class, sop_instance, ts
        self.path, fd = _new_spool_file(service.spool)
        self.file = open(fd, "wb", buffering=1 << 18)
        self.parts: list[bytes] | None = []
        self.size = 0
        self.file.write(PREAMBLE)
        self.file.write(encode_file_meta(_uid(sop_class), _uid(sop_instance), _uid(ts),
                                         re.sub(r"[^\x20-\x7e]", "", state.calling_ae)[:16]))

    def write(self, data: memoryview) -> None:
        self.file.write(data)
        self.size += len(data)
        if self.parts is not None:
            if self.size <= CHECK_IN_MEMORY:
                self.parts.append(bytes(data))
            else:
                self.parts = None

    def finish(self) -> tuple[int, str]:
        try:
            self.file.flush()
            synced = not self.service.zone.syncs_filesystem
            if synced:
                # File by file: this thread's fdatasync, while other associations' instances
                # are synced or committed; the group commit then renames, fsyncs folders and
                # commits. With syncfs the group commit syncs all its files at once.
                os.fdatasync(self.file.fileno())
            self.file.close()
            data = None if self.parts is None else b"".join(self.parts)
            self.parts = None
            return self.service.land_spooled(self.state, self.path, self.sop_class, self.sop_instance, self.ts,
                                             data=data, synced=synced)
        finally:
            self.path.unlink(missing_ok=True)  # landed files were renamed away; refused ones were copied

    def discard(self) -> None:
        self.file.close()
        self.path.unlink(missing_ok=True)


_spool_names = itertools.count()


def _new_spool_file(folder: Path) -> tuple[Path, int]:
    """A new file in this process's own spool folder: a counter names it (mkstemp's random
    names cost more than the write of a small instance)."""
    while True:
        path = folder / f"{next(_spool_names)}.part"
        try:
            return path, os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except FileExistsError:  # left by an earlier process with our pid
            continue


def _uid(value: str) -> str:
    """The request's UIDs in the File Meta Information: unchecked here (the data set's are
    checked against them), so only digits and dots."""
    return re.sub(r"[^0-9.]", "", value)[:64] or "0.0"
