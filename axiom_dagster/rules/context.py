"""One instance's evaluation state for compiled conditions: the dataset, arrival
metadata, and the attribute values read so far (raw decoding first, pydicom otherwise)."""
from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Any

from pydicom import Dataset
from pydicom.dataelem import RawDataElement

from axiom_dagster.ingest.arrival import ArrivalMeta
from axiom_dagster.dicom import fastvalues as _fv
from axiom_dagster.dicom.raw_sequences import nested_values
from axiom_dagster.dicom.private_blocks import creator_block
from axiom_dagster.rules.paths import TagPath, element_values

if TYPE_CHECKING:
    from axiom_dagster.rules.nodes import Node

_UNSET = object()


class EvalContext:
    """One instance's evaluation state: the dataset, arrival metadata, a value cache."""

    __slots__ = ("ds", "meta", "_cache", "results", "raw_ok", "codec")

    def __init__(self, ds: Dataset, meta: ArrivalMeta) -> None:
        self.ds = ds
        self.meta = meta
        self.raw_ok = _fv.pydicom_defaults()  # raw decoding gives what pydicom gives
        self.codec: Any = _UNSET  # the dataset's text codec (`_codec()`), looked up once
        self._cache: dict[str, tuple[list[Any], bool, str | None]] = {}
        # Leaf results by leaf object: identical leaves are interned at compile time, so
        # a condition shared by many rules is evaluated once per instance.
        self.results: dict[Node, bool] = {}

    def values(self, path: TagPath) -> tuple[list[Any], bool, str | None]:
        hit = self._cache.get(path.text)
        if hit is None:
            hit = None
            if self.raw_ok:
                try:
                    hit = self._fast(path)
                except (_fv.Fallback, struct.error, IndexError, ValueError):
                    hit = None
            if hit is None:
                hit = path.values(self.ds)
            self._cache[path.text] = hit
        return hit

    def _codec(self) -> str | None:
        codec = self.codec
        if codec is _UNSET:
            codec = self.codec = _fv.dataset_codec(self.ds)
        return codec

    def _fast(self, path: TagPath) -> tuple[list[Any], bool, str | None] | None:
        """The values from raw elements (fastvalues.py); None: use pydicom."""
        steps = path.steps
        d = self.ds._dict
        if len(steps) == 1:
            step = steps[0]
            tag = step.tag
            if tag is None:
                key = ("creator", step.group, step.creator)
                block = self._cache.get(key, False)
                if block is False:
                    block = self._cache[key] = creator_block(self.ds, step.group, step.creator, None)
                if block is None:
                    return [], False, path.vr
                tag = (step.group << 16) | (block << 8) | step.offset
            elem = d.get(tag)
            if elem is None:
                return [], False, path.vr
            if elem.__class__ is RawDataElement:
                values, vr = _fv.raw_values(elem, self._codec())
            else:
                vr = elem.VR
                if vr == "SQ":
                    return None
                values = element_values(elem.value)
            if isinstance(step.index, int):
                values = values[step.index : step.index + 1]
            return values, True, vr
        if len(steps) == 2 and steps[0].tag is not None and steps[1].tag is not None:
            first = steps[0]
            elem = d.get(first.tag)
            if elem is None:
                return [], False, path.vr
            if elem.__class__ is not RawDataElement:
                return None
            values, found, vr = nested_values(elem, first.index, steps[1].tag, steps[1].index, self._codec())
            return values, found, (vr if found else path.vr)
        return None
