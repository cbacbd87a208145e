"""Byte-level checks every ingest path makes before acknowledging an instance.

`part10_layout` finds where the data set of a Part 10 file starts and its transfer syntax.
`check_complete` walks the encoded data set element by element (sequences, items and
encapsulated fragments included) and raises `IncompleteDataSet` unless it parses exactly to
its end: pydicom reads a data set cut inside its last element without complaint (the value
is just shorter), so this is the only check that catches it. Messages name tags and byte
counts, never values.
"""
from __future__ import annotations

import hashlib
import mmap
import os
import struct
import zlib

IMPLICIT_LE = "1.2.840.10008.1.2"
DEFLATED_LE = "1.2.840.10008.1.2.1.99"
EXPLICIT_BE = "1.2.840.10008.1.2.2"
UNDEFINED = 0xFFFFFFFF
LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
_ITEM, _ITEM_END, _SEQ_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_PIXEL_DATA = 0x7FE00010
_MAX_DEPTH = 64
_HASH_MAPPED_UP_TO = 16 << 20  # smaller files: one pass over the map (faster)


class Unreadable(ValueError):
    """The bytes are not a DICOM data set we can read."""


class IncompleteDataSet(Unreadable):
    """The data set does not parse to its end (cut, or a damaged length)."""


def part10_layout(head: bytes) -> tuple[int, str]:
    """(offset of the data set, transfer syntax) of a Part 10 file from its first bytes.

    Accepts the standard 128-byte preamble + "DICM", or a file that starts directly with the
    "DICM" prefix or the group 0002 elements (some writers omit the preamble).
    """
    if len(head) >= 132 and head[128:132] == b"DICM":
        pos = 132
    elif head[:4] == b"DICM":
        pos = 4
    elif head[:2] == b"\x02\x00":
        pos = 0
    else:
        raise Unreadable("not a DICOM Part 10 file (no DICM prefix)")
    transfer_syntax = None
    try:
        while pos + 8 <= len(head):
            group, elem = struct.unpack_from("<HH", head, pos)
            if group != 0x0002:
                break
            vr = head[pos + 4:pos + 6]
            if vr in LONG_VRS:
                length = struct.unpack_from("<I", head, pos + 8)[0]
                pos += 12
            else:
                length = struct.unpack_from("<H", head, pos + 6)[0]
                pos += 8
            if elem == 0x0010:
                transfer_syntax = bytes(head[pos:pos + length]).decode("ascii").strip("\x00 ")
            pos += length
    except (struct.error, UnicodeDecodeError):
        raise Unreadable("damaged File Meta Information") from None
    if not transfer_syntax:
        raise Unreadable("File Meta Information has no TransferSyntaxUID (0002,0010)")
    if pos > len(head):
        raise Unreadable("File Meta Information is truncated")
    return pos, transfer_syntax


def dataset_sha256(data) -> str:
    """The SHA-256 of an encoded data set (what "identical arrival" compares)."""
    return hashlib.sha256(data).hexdigest()


def check_and_hash(mapping, offset: int, syntax: str) -> tuple[str, str | None]:
    """(sha256 of the data set at `offset`, why it does not parse to its end or None) of a
    buffer such as an mmap. Returns instead of raising so that no traceback keeps a view of
    the mapping alive when the caller closes it."""
    problem = None
    with memoryview(mapping) as whole, whole[offset:] as data:
        try:
            check_complete(data, syntax)
        except Unreadable as exc:
            problem = str(exc)
        sha = dataset_sha256(data)
    return sha, problem


def check_file_and_hash(path, offset: int, syntax: str) -> tuple[str, str | None]:
    """check_and_hash over a file with bounded memory (instances may be gigabytes): the walk
    runs over a memory map and touches only element headers; a large file is hashed in
    256 KB reads (hashing the map would map every page of the file into this process)."""
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size <= offset:
            return dataset_sha256(b""), "no data set after the File Meta Information"
        if size <= _HASH_MAPPED_UP_TO:
            with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
                return check_and_hash(mm, offset, syntax)
        problem = None
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            with memoryview(mm) as whole, whole[offset:] as data:
                try:
                    check_complete(data, syntax)
                except Unreadable as exc:
                    problem = str(exc)
        fh.seek(offset)
        return hashlib.file_digest(fh, "sha256").hexdigest(), problem


def check_complete(data, transfer_syntax: str) -> None:
    """Raise IncompleteDataSet unless the encoded data set parses exactly to its end."""
    buf = memoryview(data)
    if transfer_syntax == DEFLATED_LE:
        inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        try:
            buf = memoryview(inflater.decompress(bytes(buf)) + inflater.flush())
        except zlib.error:
            raise IncompleteDataSet("deflated data set cannot be inflated") from None
        if not inflater.eof:
            raise IncompleteDataSet("deflated data set ends before its end of stream")
    little = transfer_syntax != EXPLICIT_BE
    implicit = transfer_syntax == IMPLICIT_LE
    if not implicit and len(buf) >= 6 and not bytes(buf[4:6]).isalpha():
        implicit = True  # pydicom too reads an "explicit" data set that is implicit as implicit
    _Walker(buf, little).dataset(0, len(buf), implicit, 0, items=False)


class _Walker:
    def __init__(self, buf: memoryview, little: bool):
        self.buf = buf
        end = "<" if little else ">"
        self.tag_at = struct.Struct(end + "HH").unpack_from
        self.u16 = struct.Struct(end + "H").unpack_from
        self.u32 = struct.Struct(end + "I").unpack_from
        # Item tags and their lengths follow the data set's byte order.
        self.item_u32 = self.u32

    def _tag(self, pos: int) -> int:
        group, elem = self.tag_at(self.buf, pos)
        return (group << 16) | elem

    def dataset(self, pos: int, end: int, implicit: bool, depth: int, *, items: bool) -> int:
        """Walk elements from pos; return the position after the data set. Inside an
        undefined-length item (`items`) stop after the Item Delimitation Item."""
        if depth > _MAX_DEPTH:
            raise IncompleteDataSet("sequences nested too deep")
        buf = self.buf
        while pos < end:
            if end - pos < 8:
                raise IncompleteDataSet(f"data set cut inside an element header ({end - pos} bytes left)")
            tag = self._tag(pos)
            if tag == _ITEM_END and items:
                return pos + 8
            if implicit or tag >> 16 == 0xFFFE:
                vr, length, header = None, self.u32(buf, pos + 4)[0], 8
            else:
                vr = bytes(buf[pos + 4:pos + 6])
                if vr in LONG_VRS:
                    if end - pos < 12:
                        raise IncompleteDataSet(f"data set cut inside the header of {_name(tag)}")
                    length, header = self.u32(buf, pos + 8)[0], 12
                else:
                    length, header = self.u16(buf, pos + 6)[0], 8
            pos += header
            if length == UNDEFINED:
                if tag == _PIXEL_DATA and vr != b"SQ":
                    pos = self.fragments(pos, end)
                else:  # SQ, or UN / implicit of undefined length: a sequence (UN: implicit LE inside)
                    pos = self.sequence(pos, end, implicit or vr == b"UN", depth, tag)
            elif pos + length > end:
                raise IncompleteDataSet(
                    f"{_name(tag)} is cut: its length says {length} bytes, {end - pos} remain")
            else:
                pos += length
        if items:
            raise IncompleteDataSet("data set ends inside an undefined-length item")
        return pos

    def sequence(self, pos: int, end: int, implicit: bool, depth: int, owner: int) -> int:
        while True:
            if end - pos < 8:
                raise IncompleteDataSet(f"data set ends inside the sequence {_name(owner)}")
            tag, length = self._tag(pos), self.item_u32(self.buf, pos + 4)[0]
            pos += 8
            if tag == _SEQ_END:
                return pos
            if tag != _ITEM:
                raise IncompleteDataSet(f"damaged item in the sequence {_name(owner)}")
            if length == UNDEFINED:
                pos = self.dataset(pos, end, implicit, depth + 1, items=True)
            elif pos + length > end:
                raise IncompleteDataSet(f"an item of {_name(owner)} is cut")
            else:
                pos += length

    def fragments(self, pos: int, end: int) -> int:
        while True:
            if end - pos < 8:
                raise IncompleteDataSet("data set ends inside the encapsulated Pixel Data")
            tag, length = self._tag(pos), self.item_u32(self.buf, pos + 4)[0]
            pos += 8
            if tag == _SEQ_END:
                return pos
            if tag != _ITEM or length == UNDEFINED or pos + length > end:
                raise IncompleteDataSet("encapsulated Pixel Data fragment is damaged or cut")
            pos += length


def _name(tag: int) -> str:
    return f"element ({tag >> 16:04X},{tag & 0xFFFF:04X})"
