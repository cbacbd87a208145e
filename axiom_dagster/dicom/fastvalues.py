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
  without converting the sequence (raw_sequences.py);
- private single-step paths, resolving the creator block from the raw creator values
  (private_blocks.py).

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
from pydicom.datadict import dictionary_VR, tag_for_keyword
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


# ---- Dataset.get without converting the element ------------------------------------------

# VRs whose one value pydicom gives as the decoded text itself (a str or str subclass, '' when
# empty), and the binary numbers it gives as one int or float.
_TEXT_VALUE = frozenset(_SPLIT_RSTRIP_ALL | _SPLIT_RSTRIP_EACH | _SINGLE | {"AE"})
_NUMBER_VALUE = frozenset(_BINARY)
_PROBES: dict[str, FastTag | None] = {}


def _probe(keyword: str) -> FastTag | None:
    if keyword not in _PROBES:
        tag = tag_for_keyword(keyword)
        _PROBES[keyword] = FastTag(tag) if tag is not None else None
    return _PROBES[keyword]


def fast_get(ds, keyword: str, default: Any = None) -> Any:
    """`ds.get(keyword, default)` decoded from the element's raw bytes when it holds one text
    value (or none) or one binary number, without pydicom converting it (~30x cheaper, the
    element stays raw); pydicom's own `get` for anything else (several values, numbers as
    text, PN, dates as objects, ...). Equal value, same truthiness, same str()."""
    probe = _probe(keyword)
    if probe is None:
        return ds.get(keyword, default)
    elem = ds._dict.get(probe)
    if elem is None:
        return default
    if type(elem) is not RawDataElement or not pydicom_defaults():
        return ds.get(keyword, default)
    vr, data, little = VR_VALUE_LITTLE(elem)
    if vr is None:
        vr = dictionary_vr_or_none(int(probe))
    text = vr in _TEXT_VALUE
    if data is None or (92 in data if text else vr not in _NUMBER_VALUE):
        return ds.get(keyword, default)  # deferred, several values (backslash), or another VR
    try:
        values = DECODERS[vr](data, little, dataset_codec(ds)) if data else []
    except Fallback:
        return ds.get(keyword, default)
    if len(values) == 1:
        return values[0]
    if not values and text:
        return ""
    return ds.get(keyword, default)  # an empty number (None), or several binary numbers


def dictionary_vr_or_none(tag: int) -> str | None:
    try:
        return dictionary_VR(tag)
    except KeyError:
        return None
