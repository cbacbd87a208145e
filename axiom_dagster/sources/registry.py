"""Open the configured source by its type."""
from __future__ import annotations

from axiom_dagster.config.models import AxiomConfig
from axiom_dagster.config.sources import DicomwebSource, DimseSource, FilesystemSource
from axiom_dagster.sources.base import Source


def open_source(config: AxiomConfig, name: str) -> Source:
    spec = config.source(name)
    if isinstance(spec, DicomwebSource):
        from axiom_dagster.sources.dicomweb import DicomwebStudySource

        return DicomwebStudySource(spec, config.resolve)
    if isinstance(spec, DimseSource):
        from axiom_dagster.sources.dimse import DimseStudySource

        return DimseStudySource(spec, config.resolve)
    if isinstance(spec, FilesystemSource):
        from axiom_dagster.sources.archive import ArchiveStudySource

        return ArchiveStudySource(spec, config.resolve)
    raise TypeError(f"unknown source type {type(spec).__name__}")
