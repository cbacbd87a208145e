"""Actions that edit attributes in place of the rule's destination copy: set, delete,
prepend / suffix, regex_replace, copy / move (semantics in actions.py)."""
from __future__ import annotations

import copy
import re
from typing import Any

from pydicom import Dataset
from pydicom.multival import MultiValue

from axiom_dagster.rules.paths import ConfigError, TagPath
from axiom_dagster.rules.action_base import CompiledAction, Template, _coerce, _put


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
