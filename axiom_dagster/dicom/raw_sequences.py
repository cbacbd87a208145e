"""Values of `Seq[*].X` / `Seq[n].X` (standard tags) read from a raw little endian
sequence value without converting the sequence into Datasets (see fastvalues.py for what
the raw readers give and when they fall back to pydicom)."""
from __future__ import annotations

import struct
from typing import Any

from pydicom.datadict import dictionary_VR
from pydicom.dataelem import RawDataElement

from axiom_dagster.dicom.fastvalues import _CHARSET_TAG, Fallback, decode, element_vr

_EXPLICIT_LONG = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
_UNDEFINED = 0xFFFFFFFF
_TAG_LENGTH = struct.Struct("<HHL").unpack_from  # implicit VR, items and delimiters
_TAG_VR_LENGTH = struct.Struct("<HH2sH").unpack_from  # explicit VR, 2-byte length
_LENGTH = struct.Struct("<L").unpack_from


def _element_header(buf: bytes, pos: int, implicit: bool) -> tuple[int, bytes | None, int, int]:
    """(tag, explicit VR or None, value length, value offset) of the element at pos."""
    if implicit:
        group, elem, length = _TAG_LENGTH(buf, pos)
        return group << 16 | elem, None, length, pos + 8
    group, elem, vr, length = _TAG_VR_LENGTH(buf, pos)
    if group == 0xFFFE:
        return group << 16 | elem, None, _LENGTH(buf, pos + 4)[0], pos + 8
    if vr in _EXPLICIT_LONG:
        return group << 16 | elem, vr, _LENGTH(buf, pos + 8)[0], pos + 12
    return group << 16 | elem, vr, length, pos + 8


def _skip_undefined(buf: bytes, pos: int, implicit: bool) -> int:
    """Offset after the delimiter that closes an undefined-length value starting at pos."""
    n = len(buf)
    while pos < n:
        tag, vr, length, start = _element_header(buf, pos, implicit)
        if tag == 0xFFFEE0DD or tag == 0xFFFEE00D:
            return start
        if length == _UNDEFINED:
            pos = _skip_undefined(buf, start, implicit)
        else:
            pos = start + length
    raise Fallback


def item_hits(buf: bytes, implicit: bool, want: int, index) -> list[tuple[bytes, str | None]]:
    """The raw value and explicit VR (None: implicit) of tag `want` in each item of a raw
    sequence value that has it; only item `index` when an int. One pass over the items,
    with the answers and refusals of listing them first and then searching the ones
    selected up to their first `want`."""
    hits = []
    pos, n, k = 0, len(buf), -1
    while pos < n:
        if n - pos < 8:
            raise Fallback
        group, elem, length = _TAG_LENGTH(buf, pos)
        tag = group << 16 | elem
        if tag == 0xFFFEE0DD:
            break
        if tag != 0xFFFEE000:
            raise Fallback
        k += 1
        start = pos + 8
        undefined = length == _UNDEFINED
        if isinstance(index, int) and k != index:
            pos = _skip_undefined(buf, start, implicit) if undefined else start + length
            continue
        end = n if undefined else start + length  # undefined: up to the item's delimiter
        pos = start
        hit = None
        while pos < end:
            if end - pos < 8:
                raise Fallback
            if implicit:
                tag, vr, vlen, vstart = _element_header(buf, pos, True)
            else:  # _element_header's common explicit case inline: a 2-byte length
                group, elem, vr, vlen = _TAG_VR_LENGTH(buf, pos)
                if group == 0xFFFE or vr in _EXPLICIT_LONG:
                    tag, vr, vlen, vstart = _element_header(buf, pos, False)
                else:
                    tag, vstart = group << 16 | elem, pos + 8
            if undefined and (tag == 0xFFFEE00D or tag == 0xFFFEE0DD):
                pos = vstart
                break
            if hit is None:
                if tag == _CHARSET_TAG:
                    raise Fallback  # the item has its own character set
                if tag == want:
                    if vlen == _UNDEFINED:
                        raise Fallback
                    hit = buf[vstart : vstart + vlen], (vr.decode("ascii") if vr is not None else None)
                    if not undefined:
                        break
            pos = _skip_undefined(buf, vstart, implicit) if vlen == _UNDEFINED else vstart + vlen
        else:
            if undefined:
                raise Fallback  # no delimiter
        if not undefined:
            pos = end
        if hit is not None:
            hits.append(hit)
    return hits


def nested_values(seq_elem, index, want: int, last_index, codec) -> tuple[list[Any], bool, str | None]:
    """Values of `want` in the items of a raw top-level sequence element."""
    if not isinstance(seq_elem, RawDataElement) or seq_elem.value is None or not seq_elem.is_little_endian:
        raise Fallback
    implicit = seq_elem.is_implicit_VR
    buf = seq_elem.value
    if seq_elem.VR is not None and seq_elem.VR != "SQ":
        raise Fallback
    if implicit and seq_elem.VR is None and element_vr(seq_elem) != "SQ":
        raise Fallback
    values: list[Any] = []
    found = False
    vr_out = None
    for data, vr in item_hits(buf, implicit, want, index):
        if vr is None:
            try:
                vr = dictionary_VR(want)
            except KeyError:
                raise Fallback from None
        if vr in ("UN", "SQ") or " or " in vr:
            raise Fallback
        found = True
        vr_out = vr
        vals = decode(data, vr, True, codec)
        if isinstance(last_index, int):
            vals = vals[last_index : last_index + 1]
        values.extend(vals)
    return values, found, vr_out
