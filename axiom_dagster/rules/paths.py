"""Attribute paths: parsing, private-creator resolution and reading values.

Path syntax (one or more steps joined by "."):
    PatientName                         keyword
    (0010,0010) or 00100010             tag
    (0009,"GEMS_IDEN_01",04)            private attribute: group, private creator (in
                                        double quotes), element offset within the block
    ReferencedSeriesSequence[0].X       item 0 of a sequence (0-based)
    ReferencedSeriesSequence[*].X       every item; a sequence step without [..] means [*]
    ImageType[1]                        on the last step: one value of a multi-valued one
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from pydicom import Dataset, Sequence
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.multival import MultiValue
from pydicom.valuerep import PersonName



class ConfigError(ValueError):
    """A rules configuration error; the message names the field."""


# ---------------------------------------------------------------------------------------
# Paths
_STEP_RE = re.compile(
    r"""(?:
        \((?P<g>[0-9A-Fa-f]{4})\s*,\s*(?P<e>[0-9A-Fa-f]{4})\)
      | \((?P<pg>[0-9A-Fa-f]{4})\s*,\s*"(?P<pc>[^"]+)"\s*,\s*(?P<po>[0-9A-Fa-f]{2})\)
      | (?P<hex>[0-9A-Fa-f]{8})(?=[.\[]|$)
      | (?P<kw>[A-Za-z][A-Za-z0-9]*)
    )(?:\[(?P<idx>\d+|\*)\])?""",
    re.X,
)


@dataclass(frozen=True)
class Step:
    tag: int | None  # standard tag, or None for a private step
    group: int = 0
    creator: str = ""
    offset: int = 0
    index: int | str | None = None  # int, "*" or None

    def resolve(self, ds: Dataset) -> int | None:
        """The tag of this step in `ds` (private steps depend on the creator blocks)."""
        if self.tag is not None:
            return self.tag
        base = self.group << 16
        d = ds._dict
        for block in range(0x10, 0x100):
            elem = d.get(base | block)
            if elem is None:
                continue
            value = ds[base | block].value
            if isinstance(value, bytes):
                value = value.decode("ascii", "replace")
            if str(value).strip() == self.creator:
                return base | (block << 8) | self.offset
        return None

    def text(self) -> str:
        if self.tag is None:
            return f'({self.group:04X},"{self.creator}",{self.offset:02X})'
        return f"({self.tag >> 16:04X},{self.tag & 0xFFFF:04X})"


class TagPath:
    """A compiled attribute path. Picklable; resolution never creates anything."""

    __slots__ = ("text", "steps", "vr")

    def __init__(self, text: str) -> None:
        self.text = text
        steps: list[Step] = []
        pos = 0
        while True:
            m = _STEP_RE.match(text, pos)
            if not m:
                raise ConfigError(f"cannot parse attribute path {text!r} at position {pos}")
            idx_text = m.group("idx")
            index: int | str | None = None if idx_text is None else ("*" if idx_text == "*" else int(idx_text))
            if m.group("kw"):
                tag = tag_for_keyword(m.group("kw"))
                if tag is None:
                    raise ConfigError(f"unknown DICOM keyword {m.group('kw')!r} in path {text!r}")
                steps.append(Step(tag, index=index))
            elif m.group("hex") or m.group("g"):
                tag = int(m.group("hex") or (m.group("g") + m.group("e")), 16)
                steps.append(Step(tag, index=index))
            else:
                group = int(m.group("pg"), 16)
                if not group & 1:
                    raise ConfigError(f"private path {text!r} needs an odd group")
                steps.append(Step(None, group, m.group("pc"), int(m.group("po"), 16), index))
            pos = m.end()
            if pos == len(text):
                break
            if text[pos] != ".":
                raise ConfigError(f"expected '.' in attribute path {text!r} at position {pos}")
            pos += 1
        self.steps = tuple(steps)
        last = steps[-1]
        try:
            self.vr: str | None = dictionary_VR(last.tag) if last.tag is not None else None
        except KeyError:
            self.vr = None

    def __getstate__(self):
        return (self.text, self.steps, self.vr)

    def __setstate__(self, state):
        self.text, self.steps, self.vr = state

    def __repr__(self) -> str:
        return f"TagPath({self.text!r})"

    @property
    def nested(self) -> bool:
        return len(self.steps) > 1

    def containers(self, ds: Dataset) -> list[Dataset]:
        """The datasets (top level or existing sequence items) holding the last step."""
        current = [ds]
        for step in self.steps[:-1]:
            nxt: list[Dataset] = []
            for d in current:
                tag = step.resolve(d)
                if tag is None or tag not in d._dict:
                    continue
                elem = d[tag]
                if elem.VR != "SQ" or not elem.value:
                    continue
                if isinstance(step.index, int):
                    if step.index < len(elem.value):
                        nxt.append(elem.value[step.index])
                else:
                    nxt.extend(elem.value)
            current = nxt
        return current

    def elements(self, ds: Dataset) -> list[tuple[Dataset, int]]:
        """(container, tag) for each present occurrence of the last step."""
        last = self.steps[-1]
        out = []
        for d in self.containers(ds) if self.nested else (ds,):
            tag = last.resolve(d)
            if tag is not None and tag in d._dict:
                out.append((d, tag))
        return out

    def values(self, ds: Dataset) -> tuple[list[Any], bool, str | None]:
        """All values at this path (flattened), whether any element is present, its VR."""
        found = False
        vr = self.vr
        values: list[Any] = []
        index = self.steps[-1].index
        for d, tag in self.elements(ds):
            found = True
            elem = d[tag]
            vr = elem.VR
            vals = element_values(elem.value)
            if isinstance(index, int):
                vals = vals[index : index + 1]
            values.extend(vals)
        return values, found, vr


def element_values(value: Any) -> list[Any]:
    """A DICOM value as a flat list: [] for empty, one entry per value otherwise."""
    if value is None or value == "" or value == b"":
        return []
    if isinstance(value, Sequence):
        return list(value)  # items: only exists/not_exists are meaningful on them
    if isinstance(value, (MultiValue, list, tuple)):
        return [_plain(v) for v in value if v is not None and v != ""]
    return [_plain(value)]


def _plain(v: Any) -> Any:
    if isinstance(v, PersonName):
        return str(v)
    if isinstance(v, bytes):
        return v.decode("latin-1").rstrip("\x00 ")
    return v
