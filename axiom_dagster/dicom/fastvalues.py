"""Values of attribute paths read straight from a dataset's raw elements.

pydicom converts a RawDataElement (bytes as read) into a DataElement on first attribute
access, which costs far more than evaluating a condition on it; a sequence is parsed
into Datasets as a whole. For the common cases this module decodes only the elements a
compiled condition references, giving exactly what `TagPath.values` (pydicom conversion
then `element_values`) gives:

- string VRs decoded (the character set only matters for non-ASCII bytes: ISO_IR 100
  and ISO_IR 192 are handled, other sets fall back), padding stripped as pydicom does,
  split on backslash, empty values dropped; PN as text; IS and DS as their text;
- US, UL, SS, SL, FL, FD unpacked with the element's byte order;
- `Seq[*].X` / `Seq[n].X` with standard tags, from a little endian raw sequence,
  without converting the sequence;
- private single-step paths, resolving the creator block from the raw creator values.

Anything else returns None and the caller uses pydicom (`TagPath.values`): deferred
values, ambiguous or UN VRs, other character sets with non-ASCII bytes, ISO 2022 escapes,
AT/O*/UR/UV/SV values, big endian sequences, items with their own character set, numbers
that pydicom would refuse, and pydicom configured for numpy or datetime values.
"""
from __future__ import annotations

import codecs
import functools
import operator
import re
import struct
from typing import Any

from pydicom import config
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import RawDataElement
from pydicom.tag import BaseTag

# VR -> how pydicom turns the decoded text into values.
_SPLIT_RSTRIP_ALL = {"AS", "CS", "DA", "DT", "TM", "UI"}  # convert_string / convert_UI
_SPLIT_RSTRIP_EACH = {"LO", "SH", "UC"}  # convert_text
_SINGLE = {"LT", "ST", "UT"}  # convert_single_string
_CHARSET_VRS = {"LO", "SH", "UC", "LT", "ST", "UT", "PN"}
_NUMBER_TEXT = {"IS", "DS"}
_BINARY = {"US": "H", "UL": "L", "SS": "h", "SL": "l", "FL": "f", "FD": "d"}
_BINARY_SIZE = {"H": 2, "L": 4, "h": 2, "l": 4, "f": 4, "d": 8}
_IS_RE = re.compile(r"^[+-]?\d+(?:\.0*)?$")
_DS_RE = re.compile(r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$")
_CODECS = {"": "latin_1", "ISO_IR 6": "latin_1", "ISO_IR 100": "latin_1", "ISO_IR 192": "utf_8"}
_EXPLICIT_LONG = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
_UNDEFINED = 0xFFFFFFFF
_CHARSET_TAG = 0x00080005


class Fallback(Exception):
    """Not a case this module handles: use pydicom."""


class FastTag(BaseTag):
    """A tag to look elements up in `Dataset._dict` with: hashes and compares in C.

    The dict's keys are BaseTags, whose __eq__ is Python code, and a dict lookup with a
    plain int calls it on every hit (~0.15 us). Python calls the right operand's
    comparison first when its type subclasses the left one's, so a probe of this type
    is compared with int's own (C) methods: same value and hash, same element found,
    5x faster. Build them once (compile time): construction costs as much as it saves.
    """

    __slots__ = ()
    __eq__, __ne__ = int.__eq__, int.__ne__
    __lt__, __le__, __gt__, __ge__ = int.__lt__, int.__le__, int.__gt__, int.__ge__
    __hash__ = int.__hash__


_CHARSET_PROBE = FastTag(_CHARSET_TAG)
# RawDataElement's (VR, value, is_little_endian) in one C call (three attribute reads
# cost twice as much), by field name.
VR_VALUE_LITTLE = operator.itemgetter(*map(RawDataElement._fields.index, ("VR", "value", "is_little_endian")))


def pydicom_defaults() -> bool:
    """False when pydicom is configured to return other value types than the defaults."""
    return not (config.use_DS_numpy or config.use_IS_numpy or config.datetime_conversion
                or config.use_none_as_empty_text_VR_value)


def dataset_codec(ds) -> str | None:
    """The Python codec pydicom decodes the dataset's text with, when it is a plain
    (stateless) one: pydicom's default (ISO 8859-1), another ISO 8859 part, or UTF-8.
    None: ISO 2022 code extensions or several character sets (non-ASCII falls back)."""
    read = ds.__dict__.get("_read_charset")
    if read:
        return _read_codec(read if isinstance(read, str) else tuple(read))
    # created in memory: the current Specific Character Set
    elem = ds._dict.get(_CHARSET_PROBE)
    if elem is None:
        return "latin_1"
    value = elem.value
    if isinstance(value, bytes):
        if not value.isascii():
            return None
        value = value.decode("ascii").strip(" \x00")
    if not isinstance(value, str) or "\\" in value:
        return None
    return _CODECS.get(value.strip())


@functools.lru_cache(maxsize=64)  # a few character sets per site: look each up once
def _read_codec(read: str | tuple[str, ...]) -> str | None:
    names = [read] if isinstance(read, str) else list(read)
    if len(names) != 1:
        return None
    try:
        name = codecs.lookup(names[0]).name
    except LookupError:
        return None
    if name == "utf-8" or name.startswith("iso8859-"):
        return name
    return None


def _text(data: bytes, charset: bool, codec: str | None) -> str:
    """The bytes as pydicom decodes them: ASCII always; other bytes only for VRs that
    use the character set (`charset`), in a plain character set."""
    if data.isascii():
        if 27 in data:  # ESC: ISO 2022 (an int membership test is a memchr; b"\x1b" in costs 5x)
            raise Fallback
        return data.decode("ascii")
    if charset and codec is not None:
        try:
            return data.decode(codec)
        except UnicodeDecodeError:
            raise Fallback from None
    raise Fallback


# One decoder per VR: (data, little endian, codec) -> values, for non-empty data.
# Each starts with _text's common case inline (plain ASCII): one call less per value.
def _split_rstrip_all(charset: bool):  # convert_string, convert_UI
    def dec(data, little, codec):
        text = data.decode("ascii") if data.isascii() and 27 not in data else _text(data, charset, codec)
        text = text.rstrip(" \x00")
        if "\\" not in text:  # the common single value
            return [text] if text else []
        return [v for v in text.split("\\") if v != ""]
    return dec


def _split_rstrip_each(charset: bool):  # convert_text
    def dec(data, little, codec):
        text = data.decode("ascii") if data.isascii() and 27 not in data else _text(data, charset, codec)
        if "\\" not in text:  # the common single value
            text = text.rstrip("\x00 ")
            return [text] if text else []
        return [v for v in (v.rstrip("\x00 ") for v in text.split("\\")) if v != ""]
    return dec


def _pn(data, little, codec):
    text = data.decode("ascii") if data.isascii() and 27 not in data else _text(data, True, codec)
    return [v for v in text.rstrip("\x00 ").split("\\") if v != ""]


def _single(charset: bool):  # convert_single_string
    def dec(data, little, codec):
        text = data.decode("ascii") if data.isascii() and 27 not in data else _text(data, charset, codec)
        text = text.rstrip("\x00 ")
        return [text] if text else []
    return dec


def _ae(data, little, codec):
    return [v for v in (v.strip() for v in _text(data, False, codec).rstrip(" \x00").split("\\")) if v != ""]


def _number_text(rx, plain):
    # `plain`: a cheap test for the common spellings `rx` accepts (the text is ASCII)
    def dec(data, little, codec):
        out = []
        text = data.decode("ascii") if data.isascii() and 27 not in data else _text(data, False, None)
        text = text.strip().rstrip(" \x00")
        if "\\" not in text:  # the common single value: the loop below, once
            s = text.strip()
            if not s:
                if text:
                    raise Fallback
                return []
            if not plain(s) and rx.match(s) is None:
                raise Fallback
            return [s]
        for v in text.split("\\"):
            s = v.strip()
            if not s:
                if v:
                    raise Fallback  # whitespace-only: pydicom's rules, not ours
                continue
            if rx.match(s) is None:
                raise Fallback
            out.append(s)
        return out
    return dec


def _binary(fmt: str):
    size = _BINARY_SIZE[fmt]
    one = {True: struct.Struct("<" + fmt), False: struct.Struct(">" + fmt)}

    def unpack(data, little, codec):
        n, rest = divmod(len(data), size)
        if rest:
            raise Fallback
        if n == 1:
            return list(one[little].unpack(data))
        return list(struct.unpack(("<" if little else ">") + fmt * n, data))
    return unpack


DECODERS: dict[str, Any] = {
    **{vr: _split_rstrip_all(vr in _CHARSET_VRS) for vr in _SPLIT_RSTRIP_ALL},
    **{vr: _split_rstrip_each(vr in _CHARSET_VRS) for vr in _SPLIT_RSTRIP_EACH},
    **{vr: _single(vr in _CHARSET_VRS) for vr in _SINGLE},
    "PN": _pn,
    "AE": _ae,
    "IS": _number_text(_IS_RE, str.isdigit),
    "DS": _number_text(_DS_RE, lambda s: s.replace(".", "", 1).isdigit()),
    **{vr: _binary(fmt) for vr, fmt in _BINARY.items()},
}


def decode(data: bytes, vr: str, little: bool, codec: str | None) -> list[Any]:
    """`element_values` of the value pydicom would convert `data` to (VR `vr`)."""
    if not data:
        return []
    dec = DECODERS.get(vr)
    if dec is None:
        raise Fallback
    return dec(data, little, codec)


def element_vr(elem) -> str:
    vr = elem.VR
    if vr is None:
        try:
            vr = dictionary_VR(elem.tag)
        except KeyError:
            raise Fallback from None
    if vr == "UN" or " or " in vr:
        raise Fallback
    return vr


def raw_values(elem, codec: str | None) -> tuple[list[Any], str]:
    """(values, VR) of a raw top-level element."""
    data = elem.value
    if data is None:
        raise Fallback  # deferred read
    vr = element_vr(elem)
    return decode(data, vr, elem.is_little_endian, codec), vr


# ---------------------------------------------------------------------------------------
# Raw sequences (little endian, explicit or implicit VR)
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
