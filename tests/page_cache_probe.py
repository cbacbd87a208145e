"""How much of a file is in the page cache (mincore(2)), for tests of ingest/page_cache."""
from __future__ import annotations

import ctypes
import mmap
import os
from pathlib import Path

import pytest

_libc = ctypes.CDLL(None, use_errno=True)


def resident_pages(path: Path) -> int:
    """Pages of the file in the page cache, read through a private mapping."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        mapped = mmap.mmap(fh.fileno(), size, access=mmap.ACCESS_COPY)
    try:
        buffer = ctypes.c_char.from_buffer(mapped)
        pages = (size + mmap.PAGESIZE - 1) // mmap.PAGESIZE
        vector = (ctypes.c_ubyte * pages)()
        if _libc.mincore(ctypes.c_void_p(ctypes.addressof(buffer)), ctypes.c_size_t(size), vector) != 0:
            raise OSError(ctypes.get_errno(), "mincore")
        del buffer
        return sum(v & 1 for v in vector)
    finally:
        mapped.close()


def needs_page_cache(path: Path) -> None:
    """Skip unless `path` is on a filesystem whose clean pages posix_fadvise can drop."""
    best, kind = "", ""
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, right = line.split(" - ")
        point = left.split()[4]
        if (str(path) + "/").startswith(point.rstrip("/") + "/") and len(point) > len(best):
            best, kind = point, right.split()[0]
    if not hasattr(os, "POSIX_FADV_DONTNEED") or kind in ("", "tmpfs", "ramfs"):
        pytest.skip(f"needs a page-cache-backed filesystem with posix_fadvise (here: {kind or 'unknown'})")
