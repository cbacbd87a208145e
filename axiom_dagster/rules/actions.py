"""Compiled actions: what a matching rule does to one destination's copy of an instance.

Every action works on a Dataset that belongs to one destination (engine.py clones first)
and returns True when it changed something. Actions never mutate a DataElement in place:
they put a new element in its container, so a cheap structural clone is safe.

- set: value (template) with `vr`; creates the element when missing (the last path step
  only: sequence items are never invented). Private paths create their creator block.
- delete: every occurrence. prepend / suffix / regex_replace: per value of present
  elements; a missing attribute stays missing, an empty one becomes the affix.
- copy / move: the first occurrence of `source` to `attribute`.
- crosswalk, standardize: see lookup_actions.py.
- deidentify: a compiled PS3.15 profile. date_shift: fixed days, or keyed: a per-patient
  offset in [-max_days, -1] from HMAC(secret, PatientID); DA and DT values only.
- quarantine: stop, send nowhere, with `reason`.
"""
from __future__ import annotations

from typing import Any

from pydicom import Dataset

from axiom_dagster.deid.profile import DeidProfile, shift_dates
from axiom_dagster.deid.uidmap import UIDMapper
from axiom_dagster.rules.paths import ConfigError, TagPath
from axiom_dagster.rules.action_base import CompiledAction, _coerce, _put
from axiom_dagster.rules.attribute_actions import (
    AffixAction, CopyAction, DeleteAction, RegexReplaceAction, SetAction,
)
from axiom_dagster.rules.lookup_actions import compile_lookup_action
from axiom_dagster.config.rules import Action


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
        if act.action in ("crosswalk", "standardize"):
            return compile_lookup_action(act, where, env)
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
