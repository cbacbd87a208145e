"""Actions that look values up: crosswalk (a lookup table) and standardize (AI answers).

- crosswalk: key = values at `match` paths (stripped text; folded when the crosswalk is
  case-insensitive) -> set `set` paths from the row. On a miss: quarantine (no copies),
  keep (no change), default (set `default` values) or live (ask the SQL source now; still
  missing -> quarantine). Every miss is recorded on the ActionRun for the missing-keys report.
- standardize: the attribute's value -> its controlled-vocabulary term from the answers the
  run resolved before processing (ai.standardize); a value without an answer is kept.
Both read in-memory maps built once at compile time, so the per-instance cost is a dict get.
"""
from __future__ import annotations

from typing import Any, Mapping

from pydicom import Dataset

from axiom_dagster.config.rules import Action
from axiom_dagster.crosswalks.files import normalise_key
from axiom_dagster.crosswalks.index import CrosswalkIndex
from axiom_dagster.crosswalks.misses import key_text
from axiom_dagster.rules.actions import ActionRun, CompiledAction, SetAction, _coerce
from axiom_dagster.rules.paths import ConfigError, TagPath


class CrosswalkAction(CompiledAction):
    kind = "crosswalk"

    def __init__(self, name: str, match: Mapping[str, str], set_: Mapping[str, str], on_miss: str,
                 default: Mapping[str, Any] | None, index: CrosswalkIndex, case_insensitive: bool,
                 where: str, crosswalk=None) -> None:
        self.name = name
        self.columns = list(match.keys())
        self.match_paths = [TagPath(p) for p in match.values()]
        self.setters = [(SetAction(TagPath(p), None, "", f"{where}.set.{p}"), index.position(col))
                        for p, col in set_.items()]
        self.on_miss = on_miss
        self.defaults = [SetAction(TagPath(p), None, v, f"{where}.default.{p}") for p, v in (default or {}).items()]
        self.index = index
        self.ci = case_insensitive
        self.crosswalk = crosswalk if on_miss == "live" else None
        self.live_rows: dict[tuple, tuple | None] = {}  # per process: ask the source once per key

    def key(self, ds: Dataset) -> tuple[str, ...]:
        parts = []
        for p in self.match_paths:
            values, _, _ = p.values(ds)
            parts.append(normalise_key("\\".join(str(v) for v in values), self.ci))
        return tuple(parts)

    def apply(self, ds: Dataset, run: ActionRun) -> bool:
        key = self.key(ds)
        row = self.index.get(key)
        if row is None and self.crosswalk is not None:
            if key not in self.live_rows:
                self.live_rows[key] = self.crosswalk.live(self.columns, key)
            row = self.live_rows[key]
            if row is not None:
                run.misses.add(("crosswalk", self.name, key_text(key), "not in snapshot; found by live query"))
        if row is None:
            run.misses.add(("crosswalk", self.name, key_text(key), f"no row (on_miss {self.on_miss})"))
            if self.on_miss in ("quarantine", "live"):
                # Column names only: the key values may identify the patient.
                run.quarantine_reason = f"crosswalk {self.name!r}: no row matches columns {self.columns}"
                return False
            if self.on_miss == "keep":
                return False
            changed = False
            for setter in self.defaults:
                changed |= setter.apply(ds, run)
            return changed
        changed = False
        for setter, pos in self.setters:
            changed |= setter.put_value(ds, _coerce(setter.vr, row[pos]))
        return changed


class StandardizeAction(CompiledAction):
    kind = "standardize"

    def __init__(self, path: TagPath, answers: dict[str, str | None], where: str) -> None:
        self.path = path
        self.setter = SetAction(path, None, "", where)
        self.answers = answers  # shared with ai.standardize, which fills it before the run

    def apply(self, ds: Dataset, run: ActionRun) -> bool:
        values, _, _ = self.path.values(ds)
        text = "\\".join(str(v) for v in values).strip()
        out = self.answers.get(text) if text else None
        if out is None or out == text:
            return False
        return self.setter.put_value(ds, _coerce(self.setter.vr, out))


def compile_lookup_action(act: Action, where: str, env) -> CompiledAction:
    if act.action == "standardize":
        return StandardizeAction(TagPath(act.attribute), env.ai_answers(act), where)
    cw = env.crosswalk(act.crosswalk)
    index = env.crosswalk_index(act.crosswalk, tuple(act.match.keys()))
    for column in act.set.values():
        if column not in cw.columns():
            raise ConfigError(f"{where}.set: crosswalk {act.crosswalk!r} has no column {column!r}")
    return CrosswalkAction(act.crosswalk, act.match, act.set, act.on_miss, act.default, index,
                           getattr(cw, "case_insensitive", False), where, crosswalk=cw)
