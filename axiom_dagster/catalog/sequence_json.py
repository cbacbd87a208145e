"""A sequence's DICOM JSON (the dict pydicom's `to_json_dict` gives, with the catalog's
bulk data markers) built from its raw bytes, without parsing it into pydicom Datasets.

Items are walked in the data set's encoding; each element is rendered as fast_extract
renders a top-level one. Anything else raises `Fallback` and pydicom converts the whole
sequence: an item with its own Specific Character Set, a VR that needs pydicom (AT, UN,
ambiguous or private dictionary VRs, UR, 64-bit integers), a value the raw decoders refuse,
an undefined length that is not a sequence, nested Pixel Data, an implicit VR item inside
an explicit VR data set, bytes that do not parse to the end.
"""
from __future__ import annotations

import base64
import struct

from axiom_dagster.catalog.extract import BULK_DATA_THRESHOLD, _fast_json
from axiom_dagster.dicom.fastvalues import DECODERS, Fallback
from axiom_dagster.dicom.header_reader import _VR_INFO, CHARSET, PIXEL_DATA_TAGS, UNDEFINED, dictionary_vr

_ITEM, _ITEM_END, _SEQ_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_WHOLE_VALUE = frozenset({"US", "UL", "SS", "SL", "FL", "FD", "LT", "ST", "UT"})
_TEXT_AND_NUMBERS = frozenset({"AE", "AS", "CS", "DA", "DT", "LO", "LT", "SH", "ST", "TM", "UC", "UI", "UT", "PN",
                               "IS", "DS", "US", "UL", "SS", "SL", "FL", "FD"})
_BINARY = frozenset({"OB", "OD", "OF", "OL", "OV", "OW"})
_INLINE_MAX = (BULK_DATA_THRESHOLD // 4) * 3  # pydicom: longer binary values go to the bulk data handler
_MAX_DEPTH = 32
_STRUCTS = {little: (struct.Struct(("<" if little else ">") + "HHL").unpack_from,
                     struct.Struct(("<" if little else ">") + "HH2sH").unpack_from,
                     struct.Struct(("<" if little else ">") + "L").unpack_from) for little in (True, False)}


def sequence_json(buf: bytes, undefined_length: bool, implicit: bool, little: bool, codec: str) -> dict:
    """{"vr": "SQ", "Value": [item, ...]} of a top-level sequence's value (with an undefined
    length: its items and the Sequence Delimitation Item that ends them)."""
    value, end = _sequence(buf, 0, len(buf), undefined_length, implicit, little, codec, 0)
    if end != len(buf):
        raise Fallback
    return value


def _sequence(buf, pos, end, delimited, implicit, little, codec, depth) -> tuple[dict, int]:
    """A sequence's items from pos: up to `end` (defined length) or up to and including its
    Sequence Delimitation Item (`delimited`); the offset after it."""
    if depth > _MAX_DEPTH:
        raise Fallback
    tag_length = _STRUCTS[little][0]
    items = []
    while pos < end:
        if end - pos < 8:
            raise Fallback
        group, elem, length = tag_length(buf, pos)
        tag = group << 16 | elem
        pos += 8
        if tag == _SEQ_END:
            if not delimited:
                raise Fallback  # pydicom stops reading there, inside a defined length
            return {"vr": "SQ", "Value": items}, pos
        if tag != _ITEM:
            raise Fallback
        if length == UNDEFINED:
            item, pos = _item(buf, pos, end, True, implicit, little, codec, depth)
        else:
            stop = pos + length
            if stop > end:
                raise Fallback
            item, pos = _item(buf, pos, stop, False, implicit, little, codec, depth)
        items.append(item)
    if delimited:
        raise Fallback  # no Sequence Delimitation Item
    return {"vr": "SQ", "Value": items}, pos


def _item(buf, pos, end, delimited, implicit, little, codec, depth) -> tuple[dict, int]:
    """One item's elements as DICOM JSON; the offset after the item."""
    tag_length, tag_vr_length, u32 = _STRUCTS[little]
    out: dict[str, dict] = {}
    while pos < end:
        if end - pos < 8:
            raise Fallback
        if implicit:
            group, elem, length = tag_length(buf, pos)
            vr, pos = None, pos + 8
        else:
            group, elem, vrb, length = tag_vr_length(buf, pos)
            if group == 0xFFFE:
                vr, length, pos = None, u32(buf, pos + 4)[0], pos + 8
            else:
                info = _VR_INFO.get(vrb)
                if info is None:
                    raise Fallback  # pydicom would read this item as implicit VR
                vr, long = info
                if long:
                    length, pos = u32(buf, pos + 8)[0], pos + 12
                else:
                    pos += 8
        tag = group << 16 | elem
        if tag == _ITEM_END and delimited:
            return out, pos
        if group == 0xFFFE or tag == CHARSET or tag in PIXEL_DATA_TAGS:
            raise Fallback
        if vr is None:
            if group & 1:
                raise Fallback  # a private tag: pydicom looks up its private dictionary
            vr = dictionary_vr(tag)
        key = f"{tag:08X}"
        if vr == "SQ":
            if length == UNDEFINED:
                out[key], pos = _sequence(buf, pos, end, True, implicit, little, codec, depth + 1)
            else:
                if pos + length > end:
                    raise Fallback
                out[key], pos = _sequence(buf, pos, pos + length, False, implicit, little, codec, depth + 1)
            continue
        if length == UNDEFINED:
            raise Fallback
        stop = pos + length
        if stop > end:
            raise Fallback
        data = buf[pos:stop]
        pos = stop
        if vr in _TEXT_AND_NUMBERS:
            values = DECODERS[vr](data, little, codec) if data else []
            if vr not in _WHOLE_VALUE and (len(values) > 1 if 92 not in data else len(values) != data.count(92) + 1):
                raise Fallback  # empty values among several: pydicom keeps them
            out[key] = _fast_json(vr, values)
        elif vr in _BINARY and not implicit:
            if not data:
                out[key] = {"vr": vr}
            elif len(data) > _INLINE_MAX:
                out[key] = {"vr": vr, "BulkDataURI": f"{vr}:{len(data)}"}  # as extract._bulk_marker
            else:
                out[key] = {"vr": vr, "InlineBinary": base64.b64encode(data).decode("ascii")}
        else:
            raise Fallback
    if delimited:
        raise Fallback  # no Item Delimitation Item
    return out, pos
