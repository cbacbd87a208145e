"""Archive backfill, one StudyDate day at a time: query the day (paging, and splitting by
modality when the source caps results without paging), skip studies already complete in the
ledger, retrieve the rest. Resumable: a re-run fetches only what is missing."""
from __future__ import annotations

import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Callable, Iterable, Iterator

from axiom_dagster.config.sources import BackfillConfig
from axiom_dagster.ingest.landing import LandingZone
from axiom_dagster.sources import progress
from axiom_dagster.sources.base import Source, SourceError, StudyRef
from axiom_dagster.sources.retrieve import RetrievalTotals, retrieve_one


@dataclass
class DayResult:
    day: str  # YYYY-MM-DD, the partition key
    found: int = 0
    skipped: int = 0  # complete in the ledger already
    seconds: float = 0.0
    error: str | None = None  # the day's query failed, or some studies did
    retrieval: RetrievalTotals = field(default_factory=RetrievalTotals)

    fetched = property(lambda self: self.retrieval.fetched_studies)
    failed = property(lambda self: self.retrieval.failed_studies)
    instances = property(lambda self: self.retrieval.instances)
    bytes = property(lambda self: self.retrieval.bytes)

    def metadata(self) -> dict:
        names = ("found", "fetched", "skipped", "failed", "instances", "bytes", "seconds", "error")
        return {n: getattr(self, n) for n in names if getattr(self, n) is not None}


def days_between(first: date, last: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def find_day(source: Source, day: date, settings: BackfillConfig) -> list[StudyRef]:
    """Every study of one StudyDate. A source that caps its results (a full page whose offset
    is ignored, or as many C-FIND results as `max_results_per_query`) is asked again per
    modality, and a modality still capped per StudyTime range, halved until each answer fits
    (down to one minute: a minute with more studies than the cap fails the day)."""
    cap = settings.max_results_per_query
    found, capped = _query(source, day, cap, {})
    if capped:
        for modality in settings.split_modalities:
            part, capped = _query(source, day, cap, {"Modality": modality})
            if capped:
                part = _split_by_time(source, day, cap, {"Modality": modality}, 0, _DAY_SECONDS)
            for uid, study in part.items():
                found.setdefault(uid, study)
    return list(found.values())


_DAY_SECONDS = 24 * 3600


def _query(source: Source, day: date, cap: int, extra: dict[str, str]) -> tuple[dict[str, StudyRef], bool]:
    """Every answer to one search (paging with limit/offset where the source pages) and
    whether the source capped it."""
    found: dict[str, StudyRef] = {}
    if not getattr(source, "pages", True):  # DIMSE: no paging; a full answer may be capped
        studies = source.find_studies(day, day, limit=None, extra=extra or None).studies
        return {s.study_uid: s for s in studies}, len(studies) >= cap
    offset = 0
    while True:
        page = source.find_studies(day, day, offset=offset, limit=cap, extra=extra or None)
        new = [s for s in page.studies if s.study_uid not in found]
        found.update((s.study_uid, s) for s in new)
        if not page.more:
            return found, False
        if not new:  # offset ignored: the cap hides the rest
            return found, True
        offset += len(page.studies)


def _split_by_time(source: Source, day: date, cap: int, extra: dict[str, str], lo: int, hi: int) -> dict[str, StudyRef]:
    """Studies with StudyTime in [lo, hi) seconds of the day, halving capped ranges."""
    found, capped = _query(source, day, cap, {**extra, "StudyTime": f"{_hhmmss(lo)}-{_hhmmss(hi - 1)}"})
    if not capped:
        return found
    if hi - lo <= 60:
        raise SourceError(f"more than {cap} studies in one minute of StudyTime: the source's result cap "
                          "hides some (raise backfill.max_results_per_query to the source's cap)")
    mid = (lo + hi) // 2
    return {**_split_by_time(source, day, cap, extra, lo, mid), **_split_by_time(source, day, cap, extra, mid, hi)}


def _hhmmss(seconds: int) -> str:
    return f"{seconds // 3600:02d}{seconds // 60 % 60:02d}{seconds % 60:02d}"


def missing_studies(store, source_name: str, studies: list[StudyRef]) -> list[StudyRef]:
    counts = progress.ledger_counts(store, [s.study_uid for s in studies])
    states = progress.states(store, source_name, [s.study_uid for s in studies])
    todo, complete = [], []
    for s in studies:
        (complete if progress.is_complete(s, counts.get(s.study_uid, 0), states.get(s.study_uid)) else todo).append(s)
    # Landed completely but not recorded (killed between landing and bookkeeping): record it.
    progress.mark(store, source_name, [s for s in complete if (states.get(s.study_uid) or {}).get("status") != "done"], "done")
    return todo


def backfill_day(source: Source, zone: LandingZone, day: date, settings: BackfillConfig, *, dry_run: bool = False,
                 run_id: str | None = None, on_study: Callable = lambda _o: None,
                 on_todo: Callable[[int], None] = lambda _n: None) -> DayResult:
    """One day: found, skipped as complete, the rest retrieved. `on_todo(n)` learns how many
    studies the day will retrieve (progress bars), `on_study(outcome)` each one's result."""
    return next(iter(backfill_days(source, zone, [day], settings, dry_run=dry_run, run_id=run_id,
                                   on_study=on_study, on_todo=on_todo)))


def _plan_day(source: Source, zone: LandingZone, day: date, settings: BackfillConfig, dry_run: bool,
              run_id: str | None) -> tuple[DayResult, list[StudyRef]]:
    result = DayResult(day.isoformat())
    try:
        studies = find_day(source, day, settings)
    except Exception as exc:  # SourceError names the protocol failure
        result.error = str(exc)
        return result, []
    result.found = len(studies)
    todo = missing_studies(zone.store, source.name, studies)
    result.skipped = result.found - len(todo)
    if todo and not dry_run:
        progress.mark(zone.store, source.name, todo, "retrieving", run_id)
    return result, todo


def backfill_days(source: Source, zone: LandingZone, days: Iterable[date], settings: BackfillConfig, *,
                  dry_run: bool = False, run_id: str | None = None, on_study: Callable = lambda _o: None,
                  on_todo: Callable[[int], None] = lambda _n: None, processes=None) -> Iterator[DayResult]:
    """Yield each day's result, in day order, as soon as the day is done.

    Days are queried one after the other while one pool of `settings.concurrency` workers
    retrieves the missing studies of every day queried so far: the next day's query and the
    retrievals of several days overlap (archives hold a few studies per day), and the source
    never sees more than `concurrency` retrievals at once. The look-ahead is bounded.
    `processes`: a sources.workers.ProcessRetrieval to retrieve in (C-GET), else threads."""
    queue: deque[tuple[DayResult, list[Future], float]] = deque()
    backlog = max(4, settings.concurrency * 4)  # studies submitted but not finished

    def finish(result: DayResult, futures: list[Future], started: float) -> DayResult:
        totals = result.retrieval
        for f in futures:
            totals.add(f.result())
        totals.seconds = time.perf_counter() - started
        if totals.errors:
            result.error = "; ".join(f"{n}× {e}" for e, n in sorted(totals.errors.items()))[:500]
        result.seconds = round(time.perf_counter() - started, 3)
        return result

    with ThreadPoolExecutor(max_workers=settings.concurrency, thread_name_prefix=f"retrieve-{source.name}") as pool:
        for day in days:
            while queue and (_all_done(queue[0][1]) or sum(not f.done() for _, fs, _ in queue for f in fs) >= backlog):
                yield finish(*queue.popleft())
            started = time.perf_counter()
            result, todo = _plan_day(source, zone, day, settings, dry_run, run_id)
            on_todo(len(todo))
            futures = []
            for study in todo:
                if dry_run:
                    on_study(None)
                    continue
                future = (processes.submit(study, run_id) if processes is not None
                          else pool.submit(retrieve_one, source, zone, study, run_id))
                future.add_done_callback(lambda f: on_study(f.result()) if not f.exception() else None)
                futures.append(future)
            queue.append((result, futures, started))
        while queue:
            yield finish(*queue.popleft())


def _all_done(futures: list[Future]) -> bool:
    return all(f.done() for f in futures)
