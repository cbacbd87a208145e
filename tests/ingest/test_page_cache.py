"""Files read or written once leave the page cache once synced (ingest/page_cache)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from axiom_dagster.ingest.page_cache import read_and_release, release
from tests.page_cache_probe import needs_page_cache, resident_pages


@pytest.fixture
def synced_file(tmp_path: Path) -> tuple[Path, bytes]:
    needs_page_cache(tmp_path)
    data = os.urandom(300_000)
    path = tmp_path / "landed.dcm"
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    assert resident_pages(path) > 0  # written pages stay cached until released
    return path, data


def test_read_and_release_returns_the_bytes_and_leaves_nothing_cached(synced_file):
    path, data = synced_file
    assert read_and_release(path) == data
    assert resident_pages(path) == 0


def test_release_drops_synced_files_and_skips_missing_ones(synced_file, tmp_path):
    path, _ = synced_file
    release([path, tmp_path / "gone.dcm"])
    assert resident_pages(path) == 0
