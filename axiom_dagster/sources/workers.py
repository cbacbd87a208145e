"""C-GET retrieval in worker processes, one study per process at a time.

pynetdicom spends a few milliseconds of Python per received instance (PDU decode, DIMSE
assembly, response encoding): two associations in one process share one core through the
GIL. A C-GET source with `backfill.concurrency` > 1 therefore retrieves in that many worker
processes, each with its own association, landing zone and state-store connection (C-MOVE
keeps threads: its single listener routes by study inside one process).
"""
from __future__ import annotations

import gc
import multiprocessing
from concurrent.futures import Future, ProcessPoolExecutor

from axiom_dagster.config.models import AxiomConfig
from axiom_dagster.config.sources import DimseSource
from axiom_dagster.ingest.landing import LandingZone
from axiom_dagster.sources.base import StudyRef
from axiom_dagster.sources.registry import open_source
from axiom_dagster.sources.retrieve import retrieve_one
from axiom_dagster.store.state import StateStore

_worker: dict = {}


def wants_processes(spec) -> bool:
    return isinstance(spec, DimseSource) and spec.retrieve == "get" and spec.backfill.concurrency > 1


def _start(config: AxiomConfig, name: str) -> None:
    gc.freeze()  # the parent's objects stay out of this process's garbage collections (and their pages shared)
    store = StateStore(config.state_store_url)  # its own engine: nothing shared with the parent
    _worker["zone"] = LandingZone.for_config(config, store)
    _worker["source"] = open_source(config, name)


def _retrieve(study: StudyRef, run_id: str | None):
    return retrieve_one(_worker["source"], _worker["zone"], study, run_id)


class ProcessRetrieval:
    """submit(study, run_id) -> Future of its StudyOutcome; at most `workers` at once."""

    def __init__(self, config: AxiomConfig, name: str, workers: int):
        # fork starts a worker in milliseconds; the children only run pynetdicom, file I/O and
        # their own SQLAlchemy engine (as the pipeline's workers do).
        ctx = multiprocessing.get_context(config.pipeline.start_method)
        self._pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_start, initargs=(config, name))

    def submit(self, study: StudyRef, run_id: str | None) -> Future:
        return self._pool.submit(_retrieve, study, run_id)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
