"""Retrieve studies from a source into the landing zone with bounded concurrency, recording
each study's outcome (status, DIMSE/HTTP error) in source_studies."""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Sequence

from axiom_dagster.ingest.landing import LandingZone
from axiom_dagster.sources import progress
from axiom_dagster.sources.base import Source, StudyOutcome, StudyRef
from axiom_dagster.sources.sink import StudySink


@dataclass
class RetrievalTotals:
    studies: int = 0
    fetched_studies: int = 0
    failed_studies: int = 0
    instances: int = 0
    skipped_instances: int = 0
    bytes: int = 0
    seconds: float = 0.0
    errors: dict[str, int] = field(default_factory=dict)  # error text -> studies

    def add(self, outcome: StudyOutcome) -> None:
        self.studies += 1
        self.instances += outcome.fetched
        self.skipped_instances += outcome.skipped
        self.bytes += outcome.bytes
        if outcome.ok:
            self.fetched_studies += 1
        else:
            self.failed_studies += 1
            self.errors[outcome.error or "failed instances"] = self.errors.get(outcome.error or "failed instances", 0) + 1


def retrieve_one(source: Source, zone: LandingZone, study: StudyRef, run_id: str | None = None) -> StudyOutcome:
    """Retrieve one study into the landing zone and record its outcome; never raises for
    the study's own failure (it is recorded with the study)."""
    with StudySink(zone, source.name, study.study_uid) as sink:
        try:
            outcome = source.retrieve_study(study, sink)
        except Exception as exc:  # a source bug must not lose the other studies' results
            sink.outcome.error = f"retrieval failed: {type(exc).__name__}"
            outcome = sink.outcome
    if outcome.ok and study.instances and outcome.fetched + outcome.skipped < study.instances:
        outcome.error = f"incomplete: {outcome.fetched + outcome.skipped} of {study.instances} instances"
    progress.record_outcome(zone.store, source.name, outcome, run_id)
    return outcome


def retrieve_studies(
    source: Source, zone: LandingZone, studies: Sequence[StudyRef], *, concurrency: int = 1,
    run_id: str | None = None, on_study: Callable[[StudyOutcome], None] = lambda _o: None,
) -> RetrievalTotals:
    """Retrieve each study (at most `concurrency` at once from this source); never raises
    for one study's failure: it is recorded with the study and counted."""
    started = time.perf_counter()
    totals = RetrievalTotals()
    progress.mark(zone.store, source.name, studies, "retrieving", run_id)

    def one(study: StudyRef) -> StudyOutcome:
        return retrieve_one(source, zone, study, run_id)

    if concurrency <= 1 or len(studies) <= 1:
        for outcome in map(one, studies):
            totals.add(outcome)
            on_study(outcome)
    else:
        with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix=f"retrieve-{source.name}") as pool:
            for outcome in pool.map(one, studies):
                totals.add(outcome)
                on_study(outcome)
    totals.seconds = time.perf_counter() - started
    return totals


def studies_from_state(store, source: str, study_uids: Sequence[str]) -> list[StudyRef]:
    """StudyRefs for UIDs a sensor requested (date and expected count as found)."""
    known = progress.states(store, source, study_uids)
    return [
        StudyRef(uid, known.get(uid, {}).get("study_date"), known.get(uid, {}).get("instances_expected"))
        for uid in study_uids
    ]
