"""Compiled actions: what a matching rule does to one destination's copy of an instance.

Every action works on a Dataset that belongs to one destination (engine.py clones first)
and returns True when it changed something. Actions never mutate a DataElement in place:
they put a new element in its container, so a cheap structural clone is safe.

- set: value (template) with `vr`; creates the element when missing (the last path step
  only: sequence items are never invented). Private paths create their creator block.
- delete: every occurrence. prepend / suffix / regex_replace: per value of present
  elements; a missing attribute stays missing, an empty one becomes the affix.
- copy / move: the first occurrence of `source` to `attribute`.
- crosswalk: key = values at `match` paths (stripped text) -> set `set` paths from the row;
  on_miss quarantine (no copies), keep (no change) or default (set `default` values).
- deidentify: a compiled PS3.15 profile. date_shift: fixed days, or keyed: a per-patient
  offset in [-max_days, -1] from HMAC(secret, PatientID); DA and DT values only.
- quarantine: stop, send nowhere, with `reason`.
"""
from __future__ import annotations

from typing import Any, Mapping

from pydicom import Dataset

from axiom_dagster.deid.profile import DeidProfile, shift_dates
from axiom_dagster.deid.uidmap import UIDMapper
from axiom_dagster.rules.paths import ConfigError, TagPath
from axiom_dagster.rules.action_base import CompiledAction, _coerce, _put
from axiom_dagster.rules.attribute_actions import (
    AffixAction, CopyAction, DeleteAction, RegexReplaceAction, SetAction,
)
from axiom_dagster.crosswalks.files import normalise_key
from axiom_dagster.config.rules import Action


class CrosswalkAction(CompiledAction):
    kind = "crosswalk"

    def __init__(self, name: str, match: Mapping[str, str], set_: Mapping[str, str],
                 on_miss: str, default: Mapping[str, Any] | None, index: dict, case_insensitive: bool,
                 where: str) -> None:
        self.name = name
        self.columns = list(match.keys())
        self.match_paths = [TagPath(p) for p in match.values()]
        self.setters = [(SetAction(TagPath(p), None, "", f"{where}.set.{p}"), col) for p, col in set_.items()]
        self.on_miss = on_miss
        self.defaults = [SetAction(TagPath(p), None, v, f"{where}.default.{p}") for p, v in (default or {}).items()]
        self.index = index
        self.ci = case_insensitive

    def key(self, ds: Dataset) -> tuple[str, ...]:
        parts = []
        for p in self.match_paths:
            values, _, _ = p.values(ds)
            parts.append(normalise_key("\\".join(str(v) for v in values), self.ci))
        return tuple(parts)

    def apply(self, ds, run):
        row = self.index.get(self.key(ds))
        if row is None:
            if self.on_miss == "quarantine":
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
        for setter, column in self.setters:
            changed |= setter.put_value(ds, _coerce(setter.vr, row[column]))
        return changed


class DeidentifyAction(CompiledAction):
    kind = "deidentify"

    def __init__(self, profile: DeidProfile) -> None:
        self.profile = profile

    def apply(self, ds, run):
        self.profile.apply(ds)
        run.deidentified = True
        return True


class DateShiftAction(CompiledAction):
    kind = "date_shift"

    def __init__(self, days: int | None, mapper: UIDMapper | None, max_days: int, paths: list[TagPath] | None) -> None:
        self.days = days
        self.mapper = mapper
        self.max_days = max_days
        self.paths = paths

    def offset(self, ds: Dataset) -> int:
        if self.days is not None:
            return self.days
        pid = ds.get("PatientID")
        return self.mapper.day_offset(str(pid or ""), self.max_days)  # type: ignore[union-attr]

    def apply(self, ds, run):
        days = self.offset(ds)
        if days == 0:
            return False
        changed = False
        if self.paths is not None:
            for path in self.paths:
                for container, tag in path.elements(ds):
                    changed |= self._shift(container, tag, days)
        else:
            changed = self._walk(ds, days)
        return changed

    def _shift(self, container: Dataset, tag: int, days: int) -> bool:
        elem = container[tag]
        if elem.VR not in ("DA", "DT") or not elem.value:
            return False
        return _put(container, tag, elem.VR, shift_dates(elem.value, elem.VR, days))

    def _walk(self, ds: Dataset, days: int) -> bool:
        changed = False
        for tag in list(ds.keys()):
            elem = ds[tag]
            if elem.VR in ("DA", "DT"):
                changed |= self._shift(ds, int(tag), days)
            elif elem.VR == "SQ":
                for item in elem.value:
                    changed |= self._walk(item, days)
        return changed


class QuarantineAction(CompiledAction):
    kind = "quarantine"

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def apply(self, ds, run):
        run.quarantine_reason = self.reason
        return False


def compile_action(act: Action, where: str, env) -> CompiledAction:
    """`env` supplies profiles, crosswalk indexes and the key (compile_env.CompileEnv)."""
    try:
        if act.action == "set":
            return SetAction(TagPath(act.attribute), act.vr, act.value, where)
        if act.action == "delete":
            return DeleteAction(TagPath(act.attribute))
        if act.action in ("prepend", "suffix"):
            return AffixAction(TagPath(act.attribute), act.value, act.action == "prepend", where)
        if act.action == "regex_replace":
            return RegexReplaceAction(TagPath(act.attribute), act.pattern, act.replacement, where)
        if act.action in ("copy", "move"):
            return CopyAction(TagPath(act.source), TagPath(act.attribute), act.vr, act.action == "move", where)
        if act.action == "crosswalk":
            cw = env.crosswalk(act.crosswalk)
            index = env.crosswalk_index(act.crosswalk, tuple(act.match.keys()))
            for column in act.set.values():
                if column not in cw.columns():
                    raise ConfigError(f"{where}.set: crosswalk {act.crosswalk!r} has no column {column!r}")
            return CrosswalkAction(act.crosswalk, act.match, act.set, act.on_miss, act.default, index,
                                   getattr(cw, "case_insensitive", False), where)
        if act.action == "deidentify":
            return DeidentifyAction(env.profile(act.profile))
        if act.action == "date_shift":
            mapper = env.mapper(act.secret_env) if act.keyed else None
            paths = [TagPath(p) for p in act.attributes] if act.attributes else None
            return DateShiftAction(act.days, mapper, act.max_days, paths)
        if act.action == "quarantine":
            return QuarantineAction(act.reason or "quarantined by rule")
    except ConfigError as exc:
        if str(exc).startswith(where):
            raise
        raise ConfigError(f"{where}: {exc}") from exc
    raise ConfigError(f"{where}.action: unsupported action {act.action!r}")
