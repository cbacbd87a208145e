"""`axiom catalog build FOLDER`: catalog DICOM files already on disk (archives), without
landing or routing them. Every core reads headers (the raw header reader, pydicom for the
files it leaves, with identical rows either way); rows are written in batches with the
same write-time duplicate resolution as the pipeline. Resumable: a file already in the
catalog with the same path, size and modification time is skipped.
"""
from __future__ import annotations

import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

from axiom_dagster.catalog.columns import concat_columns, instance_columns, instance_table
from axiom_dagster.catalog.tables import write_batch

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
CHUNK = 256
FRAME_ROWS = 1024


@dataclass
class BuildReport:
    files: int = 0
    catalogued: int = 0
    skipped: int = 0
    batches: int = 0
    seconds: float = 0.0
    rejected: list[tuple[str, str]] = field(default_factory=list)
    read_by_pydicom: int = 0  # files the raw header reader left to pydicom (odd encodings, damage)

    def summary(self) -> str:
        rate = self.catalogued / self.seconds if self.seconds else 0.0
        return (
            f"catalogued {self.catalogued} instances from {self.files} files in {self.seconds:.1f}s "
            f"({rate:.0f}/s); {self.skipped} already catalogued, {len(self.rejected)} not DICOM or unreadable; "
            f"{self.read_by_pydicom} files left by the raw header reader to pydicom"
        )


def _mtime(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


def scan_files(folder: Path) -> list[tuple[str, int, int]]:
    """(path, size, mtime in µs) of the regular files under a folder (symlinks not followed)."""
    out = []
    stack = [str(Path(folder).resolve())]
    while stack:
        with os.scandir(stack.pop()) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                elif entry.is_file(follow_symlinks=False):
                    st = entry.stat(follow_symlinks=False)
                    out.append((entry.path, st.st_size, st.st_mtime_ns // 1000))
    out.sort()
    return out


def catalogued_files(root: str, folder: Path) -> set[tuple[str, int, int]]:
    from axiom_dagster.catalog.storage import CatalogStorage
    from axiom_dagster.catalog.tables import data_files
    from axiom_dagster.catalog.views import connect

    storage = CatalogStorage(root)
    if not data_files(storage, "instances") and not data_files(storage, "superseded"):
        return set()  # a new catalog: no query (a DuckDB connection and its views cost ~0.1 s)
    prefix = str(Path(folder).resolve()).replace("'", "''")
    con = connect(root, prefer_file=False)
    rows = con.execute(
        "SELECT file_path, file_size, epoch_us(file_mtime) FROM instances_all "
        f"WHERE file_path LIKE '{prefix}%' AND file_mtime IS NOT NULL"
    ).fetchall()
    return set(rows)


def extract_chunk(files: list[tuple[str, int, int]], run_id: str, received_at: datetime):
    """Rows (as column lists), rejected files and how many files pydicom read, of one chunk;
    runs in a worker process.
    Each file is read by the raw header reader; what it leaves to pydicom, pydicom reads."""
    rows, rejected, by_pydicom = [], [], 0
    for path, size, mtime in files:
        provenance = {"file_path": path, "file_size": size, "file_mtime": _mtime(mtime), "received_at": received_at,
                      "run_id": run_id}
        try:
            row = _fast_row(path, size, provenance)
            if row is None:
                by_pydicom += 1
                row = _pydicom_row(path, provenance)
        except Exception as exc:  # one unreadable file is reported, never stops the build
            rejected.append((path, f"unreadable DICOM: {type(exc).__name__}"))
            continue
        if isinstance(row, str):
            rejected.append((path, row))
        else:
            rows.append(row)
    return instance_columns(rows), rejected, by_pydicom


_NOT_AN_INSTANCE = "no SOP Instance UID or Study Instance UID"


def _fast_row(path: str, size: int, provenance: dict):
    """The row from the raw header reader; None: leave the file to pydicom."""
    from axiom_dagster.catalog.fast_extract import fast_instance_row
    from axiom_dagster.dicom.header_reader import read_header

    try:
        header = read_header(path, size)
        if 0x00080018 not in header.elements or 0x0020000D not in header.elements:
            return _NOT_AN_INSTANCE
        return fast_instance_row(header, **provenance)
    except Exception:  # Fallback, and anything the raw reader did not foresee: pydicom decides
        return None


def _pydicom_row(path: str, provenance: dict):
    from pydicom import dcmread

    from axiom_dagster.catalog.extract import instance_row

    ds = dcmread(path, defer_size=1024)
    if "SOPInstanceUID" not in ds or "StudyInstanceUID" not in ds:
        return _NOT_AN_INSTANCE
    return instance_row(ds, **provenance)


def build_catalog(folder: Path, root: str, *, workers: int = 1, batch_size: int = 20_000, progress: bool = True,
                  index=None) -> BuildReport:
    """`index`: the catalog's SOP Instance UID index (catalog/uid_index.py), used and kept
    up to date by every batch written, as the pipeline does; None reads every file."""
    from tqdm import tqdm

    started = time.perf_counter()
    now = datetime.now(timezone.utc)
    run_id = f"build-{now:%Y%m%dT%H%M%S}"
    partition = f"{now:%Y-%m-%d}"
    report = BuildReport()
    files = scan_files(folder)
    report.files = len(files)
    done = catalogued_files(root, folder)
    todo = [f for f in files if f not in done]
    report.skipped = len(files) - len(todo)
    size = max(16, min(CHUNK, -(-len(todo) // (4 * max(workers, 1)))))  # small folders: every worker busy
    chunks = [todo[i : i + size] for i in range(0, len(todo), size)]
    pending: list[dict] = []  # chunk columns not yet in a DataFrame
    frames: list = []  # DataFrames of this batch
    pending_rows = batch_rows = 0

    def to_frame() -> None:
        nonlocal pending, pending_rows
        if pending:
            frames.append(instance_table(concat_columns(pending), sort=False))
        pending, pending_rows = [], 0

    def flush() -> None:
        nonlocal frames, batch_rows
        to_frame()
        if batch_rows:
            import polars as pl

            report.batches += 1
            write_batch(root, partition, f"{run_id}-{report.batches:05d}", pl.concat(frames, how="vertical"), index=index)
        frames, batch_rows = [], 0

    with tqdm(total=len(todo), unit="file", disable=not progress, smoothing=0.1) as bar:
        for columns, rejected, by_pydicom in _run(chunks, workers, run_id, now, root):
            rows = len(columns["sop_instance_uid"])
            report.rejected += rejected
            report.read_by_pydicom += by_pydicom
            report.catalogued += rows
            pending.append(columns)
            pending_rows += rows
            batch_rows += rows
            bar.update(rows + len(rejected))
            # DataFrames of ~1,000 rows while the workers read: each has a fixed cost, and
            # what is left for the end (when one core would wait) stays small.
            if pending_rows >= FRAME_ROWS:
                to_frame()
            if batch_rows >= batch_size:
                flush()
        flush()
    report.seconds = time.perf_counter() - started
    return report


def _run(chunks, workers: int, run_id: str, received_at: datetime, root: str):
    from axiom_dagster.catalog.storage import CatalogStorage
    from axiom_dagster.catalog.tables import ensure_schema_files

    if workers <= 1 or len(chunks) < 2:
        ensure_schema_files(CatalogStorage(root))
        for chunk in chunks:
            yield extract_chunk(chunk, run_id, received_at)
        return
    # fork: workers start in milliseconds and inherit the imported modules (pydicom and the
    # extractor are imported here first, once, not in every worker).
    import axiom_dagster.catalog.fast_extract  # noqa: F401

    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("fork")) as pool:
        results = pool.map(extract_chunk, chunks, [run_id] * len(chunks), [received_at] * len(chunks))
        # A new catalog's schema files and catalog.duckdb while the workers read, not after.
        ensure_schema_files(CatalogStorage(root))
        yield from results
