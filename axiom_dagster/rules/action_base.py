"""What every compiled action shares: the action interface and per-destination run state,
the structural clone each destination's copy starts from, value templates, and `_put`
(replace an element with a new one, reporting whether its value changed)."""
from __future__ import annotations

import copy
import re
from typing import Any

from pydicom import Dataset, Sequence
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.multival import MultiValue

from axiom_dagster.rules.paths import ConfigError, TagPath, element_values

_new, _set_attr = object.__new__, object.__setattr__
_SCALARS = (str, int, float, bytes)
_INT_VRS = {"IS", "US", "UL", "SS", "SL", "SV", "UV", "AT"}
_TEXT_VRS = {"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UI", "UR", "UT"}


def clone_dataset(ds: Dataset) -> Dataset:
    """A structural copy: new containers and sequences, shared immutable raw elements.

    It runs once per modified instance, so it avoids the generic machinery: the instance
    state and element dict are copied straight into the new object (Dataset.__setattr__ and
    copy.copy cost more than the copying itself), and only converted elements, usually a
    handful among the raw ones of a freshly read header, get their own copies."""
    state = ds.__dict__.copy()
    state["_dict"] = d = ds._dict.copy()  # raw elements are immutable tuples: shared
    state["_private_blocks"] = {}
    for tag, elem in [(t, e) for t, e in d.items() if e.__class__ is not RawDataElement]:
        e = copy_element(elem)
        value = elem._value
        if elem.VR == "SQ":
            e._value = Sequence([clone_dataset(item) for item in elem.value])
        # (scalars first: MultiValue is an ABC, whose isinstance check is slow for a miss)
        elif not isinstance(value, _SCALARS) and isinstance(value, (MultiValue, list)):
            e._value = _copy_values(value)
        d[tag] = e
    meta = state.get("file_meta")
    if meta is not None:
        state["file_meta"] = clone_dataset(meta)
    new = _new(ds.__class__)
    _set_attr(new, "__dict__", state)  # object's own: Dataset.__setattr__ is slow Python
    return new


def _copy_values(values: MultiValue | list) -> MultiValue | list:
    """A new value list (the values themselves are immutable). copy.copy alone is not enough
    for a MultiValue: the copy would share its item list with the original."""
    new = copy.copy(values)
    if isinstance(values, MultiValue):
        new._list = list(values._list)
    return new


def copy_element(elem: DataElement) -> DataElement:
    """copy.copy of a DataElement (a plain instance dict), without copy's protocol lookups."""
    if elem.__class__ is not DataElement:
        return copy.copy(elem)
    e = _new(DataElement)
    e.__dict__ = elem.__dict__.copy()  # a new dict in one step: cheaper than update()
    return e


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
