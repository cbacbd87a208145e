"""Filesystem archive source: an existing folder tree of DICOM files, indexed by study and
StudyDate with one header-only read per file (once per source object), then landed study by
study like any remote source."""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from pydicom import dcmread

from axiom_dagster.config.sources import FilesystemSource
from axiom_dagster.ingest.importer import iter_files
from axiom_dagster.sources.base import Page, SourceError, StudyOutcome, StudyRef, dicom_date_range, valid_study_uid

_TAGS = ["StudyInstanceUID", "StudyDate", "Modality", "InstitutionName", "StudyDescription"]


@dataclass
class _Study:
    date: str | None
    paths: list[Path] = field(default_factory=list)
    attrs: dict[str, str] = field(default_factory=dict)


class ArchiveStudySource:
    def __init__(self, config: FilesystemSource, resolve=lambda p: p):
        self.config = config
        self.name = config.name
        self.root = Path(resolve(config.path))
        self._index: dict[str, _Study] | None = None
        self._lock = threading.Lock()
        self.unreadable = 0  # files that are not DICOM (left where they are, counted)

    def echo(self) -> str:
        if not self.root.is_dir():
            raise SourceError(f"archive folder of source {self.name} does not exist or is not a folder")
        return f"folder readable ({sum(1 for _ in zip(range(1000), iter_files(self.root)))} files in the first 1000 looked at)"

    def index(self) -> dict[str, _Study]:
        with self._lock:
            if self._index is None:
                self.echo()
                self._index = self._scan()
            return self._index

    def _scan(self) -> dict[str, _Study]:
        index: dict[str, _Study] = {}
        for path in iter_files(self.root):
            if not isinstance(path, Path):  # a link or special file, not read
                continue
            try:
                ds = dcmread(path, stop_before_pixels=True, specific_tags=_TAGS)
            except Exception:  # not DICOM or a damaged header: not part of the archive
                self.unreadable += 1
                continue
            uid = valid_study_uid(ds.get("StudyInstanceUID"))
            if uid is None:
                self.unreadable += 1
                continue
            study = index.setdefault(uid, _Study(_date(ds.get("StudyDate"))))
            study.paths.append(path)
            for keyword in _TAGS[2:]:
                if keyword in ds and keyword not in study.attrs:
                    study.attrs[keyword] = str(ds.get(keyword))
        return index

    def find_studies(self, first: date, last: date, *, offset: int = 0, limit: int | None = None,
                     extra: dict[str, str] | None = None) -> Page:
        lo, _, hi = dicom_date_range(first, last).partition("-")
        hi = hi or lo
        wanted = {**self.config.filters, **(extra or {})}
        found = sorted(
            (StudyRef(uid, s.date, len(s.paths)) for uid, s in self.index().items()
             if s.date and lo <= s.date <= hi and all(s.attrs.get(k) == v or (k == "StudyInstanceUID" and uid == v) for k, v in wanted.items())),
            key=lambda r: (r.study_date, r.study_uid),
        )
        end = None if limit is None else offset + limit
        return Page(found[offset:end], more=end is not None and end < len(found))

    def retrieve_study(self, study: StudyRef, sink) -> StudyOutcome:
        entry = self.index().get(study.study_uid)
        if entry is None:
            sink.outcome.error = "study not in the archive folder"
            return sink.outcome
        for path in entry.paths:
            try:
                data = path.read_bytes()
            except OSError as exc:
                sink.outcome.failed += 1
                sink.outcome.error = f"cannot read an archive file: {exc.strerror}"
                continue
            sink.add(data, str(path.absolute()))
        return sink.outcome

    def close(self) -> None:
        pass


def _date(value) -> str | None:
    """YYYYMMDD; old files write 1997.04.24."""
    text = str(value or "").replace(".", "").strip()
    return text if len(text) == 8 and text.isdigit() else None
