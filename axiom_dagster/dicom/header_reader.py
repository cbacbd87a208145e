"""The top-level elements of a DICOM Part 10 file read straight from its bytes, as pydicom's
`dcmread(path, defer_size=1024)` would hold them, at a fraction of the cost.

For each top-level element: (VR as written or None for implicit VR, declared length, raw
value, offset of the value). Bulk data is never read: Pixel Data and binary values (VR
OB/OD/OF/OL/OV/OW/UN, or no VR and one of those by the dictionary) longer than 1024
bytes keep only their length (value None). Sequences keep their raw bytes (pydicom
converts them on demand). Explicit and implicit VR little endian, explicit VR big endian
and every encapsulated transfer syntax.

Anything pydicom reads in a way of its own raises `Fallback` (the caller then uses
pydicom): no preamble, deflate, a command set, a data set whose first element contradicts
its transfer syntax, a VR pydicom does not know, an undefined length that is neither a
sequence nor encapsulated Pixel Data, a truncated element or trailing bytes, an Item
Delimitation Item at the top level.

(Over 300 lines: one reader with its three walkers over undefined lengths, which share its
file window and its refusals; apart they would only pass those around.)
"""
from __future__ import annotations

import os
import struct
from typing import NamedTuple

from pydicom.datadict import dictionary_VR
from pydicom.dataelem import empty_value_for_VR
from pydicom.uid import PrivateTransferSyntaxes
from pydicom.valuerep import EXPLICIT_VR_LENGTH_32, VR

from axiom_dagster.dicom.fastvalues import Fallback

IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_BE = "1.2.840.10008.1.2.2"
DEFLATED_LE = "1.2.840.10008.1.2.1.99"
PIXEL_DATA_TAGS = frozenset({0x7FE00008, 0x7FE00009, 0x7FE00010})
BULK_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN", "OB or OW", "OW or OB"})
BULK_THRESHOLD = 1024  # pydicom's defer_size in the catalog's reading
UNDEFINED = 0xFFFFFFFF
CHARSET = 0x00080005
_SQ_END, _ITEM, _ITEM_END = 0xFFFEE0DD, 0xFFFEE000, 0xFFFEE00D
_VR_NAMES = {str(vr).encode("ascii"): str(vr) for vr in VR}
_LONG_VRS = frozenset(str(vr) for vr in EXPLICIT_VR_LENGTH_32)
_LONG_VR_BYTES = frozenset(v.encode("ascii") for v in _LONG_VRS)
_VR_INFO = {b: (vr, vr in _LONG_VRS) for b, vr in _VR_NAMES.items()}  # VR bytes -> (VR, 4-byte length)
_EMPTY = {vr: empty_value_for_VR(vr, raw=True) for vr in [None, *_VR_NAMES.values()]}  # pydicom's empty raw values
FIRST_READ = 16_384  # most headers (all of the elements before Pixel Data) fit
_MAX_DEPTH = 32


class RawHeader(NamedTuple):
    """The elements of one file, {tag: (VR or None, declared length, raw value or None,
    offset of the value, length of the value)} in pydicom's order, and their encoding."""

    elements: dict
    transfer_syntax: str
    implicit: bool
    little: bool
    size: int


_VR_CACHE: dict[int, str] = {}


def dictionary_vr(tag: int) -> str:
    """pydicom's dictionary VR ("UN" for unknown tags), cached per tag."""
    vr = _VR_CACHE.get(tag)
    if vr is None:
        try:
            vr = dictionary_VR(tag)
        except KeyError:
            vr = "UN"
        if len(_VR_CACHE) < 100_000:
            _VR_CACHE[tag] = vr
    return vr


class _File:
    """A window over a file: `at(pos, n)` gives the buffer and offset holding bytes pos..pos+n."""

    __slots__ = ("fd", "size", "base", "buf")

    def __init__(self, fd: int, size: int):
        self.fd, self.size = fd, size
        self.base = 0
        self.buf = os.pread(fd, min(size, FIRST_READ), 0)

    def at(self, pos: int, n: int) -> tuple[bytes, int]:
        off = pos - self.base
        if off < 0 or off + n > len(self.buf):
            if pos + n > self.size:
                raise Fallback  # truncated
            self.buf = os.pread(self.fd, max(n, FIRST_READ), pos)
            self.base, off = pos, 0
            if len(self.buf) < n:
                raise Fallback
        return self.buf, off


class _Bytes:
    """The same window over a file already in memory."""

    __slots__ = ("size", "base", "buf")

    def __init__(self, data: bytes):
        self.size, self.base, self.buf = len(data), 0, data

    def at(self, pos: int, n: int) -> tuple[bytes, int]:
        if pos < 0 or pos + n > self.size:
            raise Fallback  # truncated
        return self.buf, pos


def read_header_bytes(data: bytes) -> RawHeader:
    """`read_header` of a Part 10 file already read into memory."""
    return _read(_Bytes(data))


def read_header(path: str, size: int | None = None) -> RawHeader:
    fd = os.open(path, os.O_RDONLY)
    try:
        if size is None:
            size = os.fstat(fd).st_size
        return _read(_File(fd, size))
    finally:
        os.close(fd)


def _read(f: _File) -> RawHeader:
    buf = f.buf
    if len(buf) < 132 + 12 or buf[128:132] != b"DICM":
        raise Fallback
    pos, syntax = _file_meta(f)
    if syntax == IMPLICIT_LE:
        implicit, little = True, True
    elif syntax == EXPLICIT_BE:
        implicit, little = False, False
    elif syntax == DEFLATED_LE or not syntax or syntax in PrivateTransferSyntaxes:
        raise Fallback
    else:  # explicit VR little endian, and every encapsulated syntax
        implicit, little = False, True
    size = f.size
    if size - pos < 8:
        raise Fallback  # an empty data set: pydicom's own reading
    data, off = f.at(pos, 8)
    if (data[off + 1] << 8 | data[off]) == 0 if little else (data[off] << 8 | data[off + 1]) == 0:
        raise Fallback  # a command set (group 0000)
    b4, b5 = data[off + 4], data[off + 5]
    if (not (0x40 < b4 < 0x5B and 0x40 < b5 < 0x5B)) != implicit:
        raise Fallback  # pydicom switches VR encoding here (with a warning)
    elements = _dataset(f, pos, implicit, little)
    return RawHeader(elements, syntax, implicit, little, size)


_META_HEADER = struct.Struct("<HH2sH").unpack_from
_U32 = struct.Struct("<L").unpack_from


def _file_meta(f: _File) -> tuple[int, str]:
    """(offset of the data set, transfer syntax) from the group 0002 elements (all in the
    first read, or the file is left to pydicom)."""
    buf, size = f.buf, f.size
    if f.base != 0:
        raise Fallback
    pos, syntax, n = 132, None, len(buf)
    while True:
        if pos + 12 > n:
            raise Fallback
        group, elem, vrb, length = _META_HEADER(buf, pos)
        if group != 2:
            break
        info = _VR_INFO.get(vrb)
        if info is None:
            raise Fallback
        if info[1]:
            length, header = _U32(buf, pos + 8)[0], 12
            if length == UNDEFINED:
                raise Fallback
        else:
            header = 8
        if elem == 0x0010:
            value = buf[pos + header : pos + header + length]
            if len(value) != length or not value.isascii() or 0x5C in value:
                raise Fallback
            syntax = value.decode("ascii").rstrip("\0 ")
        pos += header + length
        if pos > size:
            raise Fallback
    if syntax is None:
        raise Fallback
    return pos, syntax


def _dataset(f: _File, pos: int, implicit: bool, little: bool) -> dict:
    end_chr = "<" if little else ">"
    explicit_header = struct.Struct(end_chr + "HH2sH").unpack_from
    implicit_header = struct.Struct(end_chr + "HHL").unpack_from
    u32 = struct.Struct(end_chr + "L").unpack_from
    size = f.size
    elements: dict[int, tuple] = {}
    vr_info, bulk_vrs, pixel_tags, empty = _VR_INFO, BULK_VRS, PIXEL_DATA_TAGS, _EMPTY
    buf, base = f.buf, f.base
    end = base + len(buf)  # file offset where the window ends
    while pos < size:
        if pos + 12 > end:  # most elements are in the window
            if size - pos < 8:
                raise Fallback  # trailing bytes: pydicom stops there silently
            buf, _ = f.at(pos, 12 if size - pos >= 12 else 8)
            base = f.base
            end = base + len(buf)
        off = pos - base
        if implicit:
            group, elem, length = implicit_header(buf, off)
            vr = None
            vtell = pos + 8
        else:
            group, elem, vrb, length = explicit_header(buf, off)
            info = vr_info.get(vrb)
            if info is None:
                raise Fallback
            vr, long = info
            if long:
                if size - pos < 12:
                    raise Fallback
                length = u32(buf, off + 8)[0]
                vtell = pos + 12
            else:
                vtell = pos + 8
        if group == 0xFFFE:
            raise Fallback
        tag = group << 16 | elem
        if length == UNDEFINED:
            if tag in pixel_tags:
                delimiter = _encapsulated_end(f, vtell, u32, little)
                elements[tag] = (vr, UNDEFINED, None, vtell, delimiter - vtell)
                pos = delimiter + 8
            elif (vr or dictionary_vr(tag)) == "SQ":
                pos = _sequence_end(f, vtell, implicit, little, 0)
                buf, off = f.at(vtell, pos - vtell)
                elements[tag] = (vr, UNDEFINED, buf[off : off + pos - vtell], vtell, pos - vtell)
            else:
                raise Fallback
            buf, base = f.buf, f.base
            end = base + len(buf)
            continue
        pos = vtell + length
        if pos > size:
            raise Fallback  # truncated value
        if group == 0x7FE0 or length > BULK_THRESHOLD:
            if tag in pixel_tags or (length > BULK_THRESHOLD and (vr or dictionary_vr(tag)) in bulk_vrs):
                elements[tag] = (vr, length, None, vtell, length)
                continue
        if length:
            if pos > end:
                buf, _ = f.at(vtell, length)
                base = f.base
                end = base + len(buf)
            value = buf[vtell - base : pos - base]
        else:
            value = empty[vr]
        elements[tag] = (vr, length, value, vtell, length)
    return elements


def _encapsulated_end(f: _File, pos: int, u32, little: bool) -> int:
    """Offset of the Sequence Delimitation Item that ends encapsulated Pixel Data (items walked
    as pydicom's reader walks them first)."""
    item = b"\xfe\xff\x00\xe0" if little else b"\xff\xfe\xe0\x00"
    delimiter = b"\xfe\xff\xdd\xe0" if little else b"\xff\xfe\xe0\xdd"
    while True:
        buf, off = f.at(pos, 8)
        tag = buf[off : off + 4]
        if tag == delimiter:
            return pos
        if tag != item:
            raise Fallback  # pydicom then scans byte by byte
        pos += 8 + u32(buf, off + 4)[0]


def _sequence_end(f: _File, pos: int, implicit: bool, little: bool, depth: int) -> int:
    """Offset after the Sequence Delimitation Item of an undefined length sequence."""
    if depth > _MAX_DEPTH:
        raise Fallback
    tag_length = struct.Struct(("<" if little else ">") + "HHL").unpack_from
    while True:
        buf, off = f.at(pos, 8)
        group, elem, length = tag_length(buf, off)
        tag = group << 16 | elem
        pos += 8
        if tag == _SQ_END:
            return pos
        if tag != _ITEM:
            raise Fallback
        if length == UNDEFINED:
            pos = _item_end(f, pos, implicit, little, depth + 1)
        else:
            pos += length
            if pos > f.size:
                raise Fallback


def _item_end(f: _File, pos: int, implicit: bool, little: bool, depth: int) -> int:
    """Offset after the Item Delimitation Item of an undefined length item."""
    end_chr = "<" if little else ">"
    implicit_header = struct.Struct(end_chr + "HHL").unpack_from
    explicit_header = struct.Struct(end_chr + "HH2sH").unpack_from
    u32 = struct.Struct(end_chr + "L").unpack_from
    while True:
        buf, off = f.at(pos, 8)
        if implicit:
            group, elem, length = implicit_header(buf, off)
            vr, header = None, 8
        else:
            group, elem, vrb, length = explicit_header(buf, off)
            if group == 0xFFFE:
                vr, header, length = None, 8, u32(buf, off + 4)[0]
            else:
                vr = _VR_NAMES.get(vrb)
                if vr is None:
                    raise Fallback  # e.g. an implicit VR item inside explicit VR: pydicom's reading
                header = 8
                if vrb in _LONG_VR_BYTES:
                    buf, off = f.at(pos, 12)
                    length, header = u32(buf, off + 8)[0], 12
        tag = group << 16 | elem
        pos += header
        if tag == _ITEM_END:
            return pos
        if group == 0xFFFE:
            raise Fallback
        if length == UNDEFINED:
            if tag in PIXEL_DATA_TAGS or (vr or dictionary_vr(tag)) != "SQ":
                raise Fallback
            pos = _sequence_end(f, pos, implicit, little, depth + 1)
        else:
            pos += length
            if pos > f.size:
                raise Fallback
