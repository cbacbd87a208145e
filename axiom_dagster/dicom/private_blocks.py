"""Private creator blocks resolved from the raw creator elements (no conversion)."""
from __future__ import annotations

import functools

from pydicom.dataelem import RawDataElement

from axiom_dagster.dicom.fastvalues import Fallback, FastTag


@functools.lru_cache(maxsize=64)
def _creator_tags(base: int) -> frozenset[int]:
    return frozenset(range(base | 0x10, base | 0x100))


@functools.lru_cache(maxsize=64)
def _creator_probes(base: int) -> tuple[FastTag, ...]:
    return tuple(FastTag(t) for t in range(base | 0x10, base | 0x100))


def creator_block(ds, group: int, creator: str, codec) -> int | None:
    """The first block (0x10..0xFF) of `group` whose private creator is `creator`."""
    d = ds._dict
    base = group << 16
    # Blocks are usually reserved from 0x10 upwards without gaps: probe them in order
    # (FastTag lookups). Past the first free block, look for further creators among
    # the keys: a set intersection compares hashes in C (no BaseTag comparisons).
    for probe in _creator_probes(base):
        elem = d.get(probe)
        if elem is None:
            break
        if _creator_text(elem) == creator:
            return probe & 0xFF
    else:
        return None
    t = int(probe)
    for t in sorted(k for k in map(int, d.keys() & _creator_tags(base)) if k > t):
        if _creator_text(d[t]) == creator:
            return t & 0xFF
    return None


def _creator_text(elem) -> str:
    if isinstance(elem, RawDataElement):
        if elem.value is None:
            raise Fallback
        value = elem.value
        if not value.isascii():
            raise Fallback
        text = value.decode("ascii")
    else:
        text = elem.value
        if isinstance(text, bytes):
            text = text.decode("ascii", "replace")
    if isinstance(text, str):
        if "\\" in text:
            raise Fallback
        text = text.rstrip("\x00 ")
    return str(text).strip()
