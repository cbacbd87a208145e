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

import copy
import re
from typing import Any

from pydicom import Dataset, Sequence
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.multival import MultiValue

from axiom_dagster.deid.profile import DeidProfile, shift_dates
from axiom_dagster.deid.uidmap import UIDMapper
from axiom_dagster.rules.paths import ConfigError, TagPath, element_values
from axiom_dagster.config.rules import Action

_INT_VRS = {"IS", "US", "UL", "SS", "SL", "SV", "UV", "AT"}
_FLOAT_VRS = {"DS", "FL", "FD"}
_TEXT_VRS = {"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UI", "UR", "UT"}


def clone_dataset(ds: Dataset) -> Dataset:
    """A structural copy: new containers and sequences, shared immutable raw elements."""
    new = ds.__class__.__new__(ds.__class__)
    new.__dict__.update(ds.__dict__)
    new._dict = d = ds._dict.copy()  # raw elements are immutable tuples: shared
    new._private_blocks = {}
    for tag, elem in d.items():
        if elem.__class__ is RawDataElement:
            continue
        e = copy.copy(elem)
        if elem.VR == "SQ":
            e._value = Sequence([clone_dataset(item) for item in elem.value])
        elif isinstance(elem._value, (MultiValue, list)):
            e._value = copy.copy(elem._value)
        d[tag] = e
    meta = ds.__dict__.get("file_meta")
    if meta is not None:
        new.__dict__["file_meta"] = clone_dataset(meta)
    return new


class Template:
    """"{Modality}_{StudyDate}": literal text and attribute paths; "{{"/"}}" escape."""

    _FIELD = re.compile(r"\{\{|\}\}|\{([^{}]+)\}")

    def __init__(self, text: str, where: str) -> None:
        self.parts: list[str | TagPath] = []
        pos = 0
        for m in self._FIELD.finditer(text):
            self.parts.append(text[pos : m.start()])
            if m.group(0) in ("{{", "}}"):
                self.parts.append(m.group(0)[0])
            else:
                try:
                    self.parts.append(TagPath(m.group(1).strip()))
                except ConfigError as exc:
                    raise ConfigError(f"{where}: {exc}") from exc
            pos = m.end()
        self.parts.append(text[pos:])
        self.parts = [p for p in self.parts if p != ""]
        self.static = all(isinstance(p, str) for p in self.parts)
        self.text = text

    def render(self, ds: Dataset) -> str:
        if self.static:
            return "".join(self.parts)  # type: ignore[arg-type]
        out = []
        for p in self.parts:
            if isinstance(p, str):
                out.append(p)
            else:
                values, _, _ = p.values(ds)
                out.append("\\".join(str(v) for v in values))
        return "".join(out)


def _coerce(vr: str, value: Any) -> Any:
    if isinstance(value, list):
        return [_coerce(vr, v) for v in value]
    if value is None:
        return None
    if vr in _INT_VRS and vr != "IS":
        return int(value)
    if vr in ("FL", "FD"):
        return float(value)
    if vr in _TEXT_VRS or vr == "IS":
        return str(value)
    return value


class ActionRun:
    """Per destination: collects a quarantine decision and lookup misses (kind, name, key, reason)."""

    __slots__ = ("quarantine_reason", "deidentified", "misses")

    def __init__(self, misses: set | None = None) -> None:
        self.quarantine_reason: str | None = None
        self.deidentified = False
        self.misses = misses if misses is not None else set()


def _put(container: Dataset, tag: int, vr: str, value: Any) -> bool:
    old = container._dict.get(tag)
    if old is not None:
        old_elem = container[tag]
        new = DataElement(tag, vr, value)
        if old_elem.VR == vr and element_values(old_elem.value) == element_values(new.value):
            return False
        container[tag] = new
        return True
    container[tag] = DataElement(tag, vr, value)
    return True


class CompiledAction:
    kind = "?"

    def apply(self, ds: Dataset, run: ActionRun) -> bool:  # pragma: no cover - interface
        raise NotImplementedError


class SetAction(CompiledAction):
    kind = "set"

    def __init__(self, path: TagPath, vr: str | None, value: Any, where: str) -> None:
        self.path = path
        vr = vr or path.vr
        if vr is None:
            raise ConfigError(f"{where}.vr: needed for {path.text!r} (private or unknown tag)")
        self.vr = vr.split(" or ")[0]  # ambiguous dictionary VRs such as "US or SS"
        values = value if isinstance(value, list) else [value]
        self.templates = [Template(str(v), f"{where}.value") for v in values]
        self.multi = isinstance(value, list)

    def value(self, ds: Dataset) -> Any:
        rendered = [t.render(ds) for t in self.templates]
        return _coerce(self.vr, rendered if self.multi else rendered[0])

    def apply(self, ds, run):
        return self.put_value(ds, self.value(ds))

    def put_value(self, ds: Dataset, value: Any) -> bool:
        last = self.path.steps[-1]
        containers = self.path.containers(ds) if self.path.nested else [ds]
        changed = False
        for c in containers:
            tag = last.resolve(c)
            if tag is None:  # private creator block missing: reserve one
                tag = int(c.private_block(last.group, last.creator, create=True).get_tag(last.offset))
            vr = self.vr
            if tag in c._dict and c[tag].VR not in (None, "UN") and self.path.vr is None and vr != c[tag].VR:
                vr = c[tag].VR
            changed |= _put(c, tag, vr, value)
        return changed


class DeleteAction(CompiledAction):
    kind = "delete"

    def __init__(self, path: TagPath) -> None:
        self.path = path

    def apply(self, ds, run):
        hits = self.path.elements(ds)
        for container, tag in hits:
            del container[tag]
        return bool(hits)


class _TextAction(CompiledAction):
    def __init__(self, path: TagPath) -> None:
        self.path = path

    def transform(self, text: str, ds: Dataset) -> str:  # pragma: no cover - interface
        raise NotImplementedError

    def apply(self, ds, run):
        changed = False
        for container, tag in self.path.elements(ds):
            elem = container[tag]
            if elem.VR == "SQ":
                continue
            value = elem.value
            if isinstance(value, (MultiValue, list)):
                new: Any = [self.transform(str(v), ds) for v in value]
            else:
                new = self.transform("" if value is None else str(value), ds)
            changed |= _put(container, tag, elem.VR, new)
        return changed


class AffixAction(_TextAction):
    def __init__(self, path: TagPath, value: Any, prefix: bool, where: str) -> None:
        super().__init__(path)
        self.kind = "prepend" if prefix else "suffix"
        self.template = Template(str(value), f"{where}.value")
        self.prefix = prefix

    def transform(self, text, ds):
        affix = self.template.render(ds)
        return affix + text if self.prefix else text + affix


class RegexReplaceAction(_TextAction):
    kind = "regex_replace"

    def __init__(self, path: TagPath, pattern: str, replacement: str, where: str) -> None:
        super().__init__(path)
        try:
            self.regex = re.compile(pattern)
        except re.error as exc:
            raise ConfigError(f"{where}.pattern: invalid regex: {exc}") from exc
        # Check group references now rather than on the first instance.
        for m in re.finditer(r"\\(\d+)|\\g<(\w+)>", replacement):
            ref = m.group(1) or m.group(2)
            ok = int(ref) <= self.regex.groups if ref.isdigit() else ref in self.regex.groupindex
            if not ok:
                raise ConfigError(f"{where}.replacement: no group {ref!r} in pattern")
        self.replacement = replacement

    def transform(self, text, ds):
        return self.regex.sub(self.replacement, text)


class CopyAction(CompiledAction):
    def __init__(self, source: TagPath, target: TagPath, vr: str | None, move: bool, where: str) -> None:
        self.kind = "move" if move else "copy"
        self.source = source
        self.target = target
        self.vr = vr or target.vr
        self.move = move
        self.where = where

    def apply(self, ds, run):
        hits = self.source.elements(ds)
        if not hits:
            return False
        container, tag = hits[0]
        elem = container[tag]
        vr = self.vr or elem.VR
        value = copy.deepcopy(elem.value) if elem.VR == "SQ" else elem.value
        if isinstance(value, (MultiValue, list)) and vr != "SQ":
            value = list(value)
        last = self.target.steps[-1]
        changed = False
        for c in self.target.containers(ds) if self.target.nested else [ds]:
            t = last.resolve(c)
            if t is None:
                t = int(c.private_block(last.group, last.creator, create=True).get_tag(last.offset))
            if self.move and c is container and t == tag:
                continue
            changed |= _put(c, t, vr.split(" or ")[0], value)
        if self.move:
            del container[tag]
            changed = True
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
    """`env` supplies profiles, crosswalk indexes and the key (see engine.Compiler)."""
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
            from axiom_dagster.rules.lookup_actions import compile_lookup_action  # it imports this module

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
