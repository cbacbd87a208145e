"""AI standardization of a run's distinct values, before its instances are processed.

`resolve_batch` reads the standardized attributes of the batch's files (header only), asks
the model once per batch of `ai.batch_size` distinct values that no cache entry answers,
stores the answers, and fills the process-wide answer maps the compiled `standardize`
actions read (workers forked afterwards inherit them; spawned ones load from the store).
The cost guard stops asking when the run's or the UTC day's calls or tokens are used up:
those values are kept as they are and reported as misses (`lookup_misses`, kind "ai").
"""
from __future__ import annotations

import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Iterable

from pydicom import dcmread
from pydicom.datadict import tag_for_keyword
from pydicom.multival import MultiValue
from pydicom.tag import Tag

from axiom_dagster.ai.cache import AICache
from axiom_dagster.ai.prompts import SYSTEM, answer_schema, parse_answers, prompt_version, user_message
from axiom_dagster.ai.providers import AIProviderError, make_client
from axiom_dagster.config.ai import AIConfig
from axiom_dagster.crosswalks.misses import record_misses
from axiom_dagster.store.state import StateStore


@dataclass(frozen=True)
class Target:
    provider: str
    model: str
    attribute: str
    vocabulary: str
    terms: tuple[str, ...]
    extra: str | None

    @property
    def version(self) -> str:
        return prompt_version(self.attribute, list(self.terms), self.extra)

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.provider, self.model, self.version)

    @property
    def label(self) -> str:
        return f"{self.vocabulary}:{self.attribute}"


@dataclass
class ResolveReport:
    distinct_values: int = 0
    cached: int = 0
    answered: int = 0
    calls: int = 0
    tokens: int = 0
    misses: int = 0
    stopped_by: str | None = None
    seconds: float = 0.0
    per_target: dict[str, dict] = field(default_factory=dict)


_STORES: dict[str, StateStore] = {}
_ANSWERS: dict[tuple, dict[str, str | None]] = {}


def _cache(url: str) -> AICache:
    if url not in _STORES:
        store = StateStore(url)
        store.migrate()  # once per URL and process; a no-op when current
        _STORES[url] = store
    return AICache(_STORES[url].engine)


def target_for(ai: AIConfig, act) -> Target:
    spec = ai.providers[act.provider]
    return Target(act.provider, spec.model, act.attribute, act.vocabulary, tuple(ai.vocabularies[act.vocabulary]), act.prompt)


def targets(config) -> list[Target]:
    """The distinct standardize targets of a configuration's rules."""
    found: dict[tuple, Target] = {}
    for rs in config.rulesets:
        if not rs.enabled:
            continue
        for rule in rs.rules:
            acts = list(rule.actions) + [a for group in rule.destination_actions.values() for a in group]
            for act in acts:
                if rule.enabled and act.action == "standardize":
                    t = target_for(config.ai, act)
                    found[(t.key, t.attribute, t.vocabulary)] = t
    return list(found.values())


def shared_answers(store_url: str, ai: AIConfig, act) -> dict[str, str | None]:
    """The answer map a compiled standardize action reads (one object per target and process)."""
    t = target_for(ai, act)
    key = (store_url, *t.key, t.vocabulary)
    if key not in _ANSWERS:
        _ANSWERS[key] = _cache(store_url).answers(*t.key, t.vocabulary)
    return _ANSWERS[key]


def _tag(attribute: str) -> int | None:
    text = attribute.strip()
    if text.startswith("(") and text.endswith(")") and "," in text:
        try:
            g, e = (int(x, 16) for x in text[1:-1].split(","))
            return int(Tag(g, e))
        except ValueError:
            return None
    return tag_for_keyword(text)


def distinct_values(paths: Iterable[str], attributes: list[str], workers: int = 1) -> dict[str, set[str]]:
    """attribute -> distinct non-empty text values in the files (headers only), read by
    `workers` forked processes when there are many files."""
    paths = list(paths)
    if workers > 1 and len(paths) >= 256:
        size = -(-len(paths) // (workers * 4))
        chunks = [paths[i : i + size] for i in range(0, len(paths), size)]
        out: dict[str, set[str]] = {a: set() for a in attributes}
        ctx = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            for part in pool.map(distinct_values, chunks, [attributes] * len(chunks)):
                for a, values in part.items():
                    out[a] |= values
        return out
    tags = {a: _tag(a) for a in attributes}
    wanted = [t for t in tags.values() if t is not None]
    out: dict[str, set[str]] = {a: set() for a in attributes}
    for path in paths:
        try:
            ds = dcmread(path, stop_before_pixels=True, specific_tags=wanted)
        except Exception:
            continue  # the pipeline's validation reports unreadable files
        for a, t in tags.items():
            if t is not None and t in ds:
                value = ds[t].value
                text = "\\".join(str(v) for v in value) if isinstance(value, (list, tuple, MultiValue)) else str(value or "")
                if text.strip():
                    out[a].add(text.strip())
    return out


def resolve_batch(config, paths: Iterable[str], run_id: str | None = None,
                  log: Callable[[str], None] = lambda _m: None, now: datetime | None = None) -> ResolveReport:
    report = ResolveReport()
    found = targets(config)
    if not found:
        return report
    started = time.perf_counter()
    url = config.state_store_url
    cache = _cache(url)
    guard = config.ai.cost_guard
    today = (now or datetime.now(timezone.utc)).date()
    day_calls, day_tokens = cache.usage(today)
    workers = config.pipeline.workers or os.cpu_count() or 1
    values = distinct_values(list(paths), sorted({t.attribute for t in found}), workers)
    misses: list[tuple[str, str, str, str]] = []
    clients: dict[str, object] = {}
    for t in found:
        answers = _ANSWERS.setdefault((url, *t.key, t.vocabulary), {})
        answers.clear()
        answers.update(cache.answers(*t.key, t.vocabulary))  # reviews since the last run count
        wanted = sorted(values[t.attribute])
        todo = [v for v in wanted if v not in answers]
        stats = {"distinct": len(wanted), "cached": len(wanted) - len(todo), "calls": 0, "answered": 0}
        report.distinct_values += len(wanted)
        report.cached += stats["cached"]
        for start in range(0, len(todo), config.ai.batch_size):
            chunk = todo[start : start + config.ai.batch_size]
            stop = _over_guard(guard, report, day_calls, day_tokens)
            if stop is None:
                try:
                    client = clients.get(t.provider) or clients.setdefault(
                        t.provider, make_client(t.provider, config.ai.providers[t.provider]))
                    done = client.complete(SYSTEM, user_message(t.attribute, list(t.terms), t.extra, chunk),
                                           answer_schema(list(t.terms)))
                except AIProviderError as exc:
                    stop = str(exc)
            if stop is not None:
                report.stopped_by = report.stopped_by or stop
                misses += [("ai", t.label, v, stop[:256]) for v in todo[start:]]
                break
            report.calls += 1
            report.tokens += done.tokens
            day_calls += 1
            day_tokens += done.tokens
            cache.add_usage(today, t.provider, 1, done.tokens)
            try:
                got = parse_answers(done.text, chunk, list(t.terms))
            except (ValueError, AttributeError):
                got = {}
            cache.put(*t.key, t.vocabulary, got, done.tokens // max(1, len(got)))
            answers.update(got)
            misses += [("ai", t.label, v, "the model gave no answer") for v in chunk if v not in got]
            stats["calls"] += 1
            stats["answered"] += len(got)
            report.answered += len(got)
        report.per_target[t.label] = stats
    report.misses = record_misses(cache.engine, misses, run_id)
    report.seconds = round(time.perf_counter() - started, 3)
    log(f"ai standardization: {report.distinct_values} distinct values, {report.cached} cached, "
        f"{report.calls} model calls, {report.tokens} tokens, {report.misses} misses, {report.seconds:.2f}s"
        + (f" (stopped: {report.stopped_by})" if report.stopped_by else ""))
    return report


def _over_guard(guard, report: ResolveReport, day_calls: int, day_tokens: int) -> str | None:
    if report.calls >= guard.max_calls_per_run:
        return "cost guard: max_calls_per_run reached"
    if report.tokens >= guard.max_tokens_per_run:
        return "cost guard: max_tokens_per_run reached"
    if day_calls >= guard.max_calls_per_day:
        return "cost guard: max_calls_per_day reached"
    if day_tokens >= guard.max_tokens_per_day:
        return "cost guard: max_tokens_per_day reached"
    return None
