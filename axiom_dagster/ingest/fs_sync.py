"""One sync for many files: syncfs(2) on the landing zone's filesystem.

A group of instances landed together used to cost one fdatasync per file plus one fsync per
folder, each a journal commit and a disk cache flush of its own (and ~0.5 ms of kernel CPU
per file). syncfs writes back every dirty file and folder of one filesystem and waits for
it: one call makes a whole group's data, new names and new folders durable. Since Linux
5.8 it also reports write-back errors, for the filesystem as a whole, to each descriptor
once: the descriptor here stays open for the zone's life, so an error since the previous
sync, on any file, fails the group being synced (never silently acknowledged).

It also writes back other programs' dirty data on the same filesystem: on a filesystem
shared with busy writers, `landing.sync: file` (one fdatasync per file) may be the better
choice. Not available (not Linux, or no syncfs in the C library): None, and the landing
zone syncs file by file.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading
from pathlib import Path


def _load_syncfs():
    if not hasattr(os, "O_DIRECTORY"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        fn = libc.syncfs  # glibc >= 2.14, musl
    except (OSError, AttributeError):
        return None
    fn.argtypes, fn.restype = [ctypes.c_int], ctypes.c_int
    return fn  # a CDLL call releases the GIL while the kernel waits


_syncfs = _load_syncfs()


class FilesystemSync:
    """syncfs of the filesystem holding `root` (created if missing), through one descriptor
    opened on first use and kept open. `covers(folder)`: whether a folder lies on that
    filesystem (a mount below the root does not; its files are synced one by one)."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self._fd: int | None = None
        self._dev: int | None = None
        self._lock = threading.Lock()
        self._covered: dict[Path, bool] = {}

    @staticmethod
    def available() -> bool:
        return _syncfs is not None

    def _open(self) -> int:
        with self._lock:
            if self._fd is None:
                self.root.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
                self._dev = os.fstat(fd).st_dev
                self._fd = fd
            return self._fd

    def covers(self, folder: Path) -> bool:
        known = self._covered.get(folder)
        if known is None:
            self._open()
            known = os.stat(folder).st_dev == self._dev
            if len(self._covered) > 10_000:
                self._covered.clear()  # bounded; a miss costs one stat
            self._covered[folder] = known
        return known

    def sync(self) -> None:
        """Everything written to the filesystem before this call is durable when it returns
        (or OSError, e.g. EIO from a failed write-back since the previous sync)."""
        if _syncfs(self._open()) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))

    def close(self) -> None:
        with self._lock:
            fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)
