"""Fast byte-level DICOM helpers for receivers and archive retrieval: read the identifying UIDs
of an encoded data set without decoding it, and write the File Meta Information ourselves.

The light parser walks elements up to (0020,000E) in Implicit/Explicit VR Little Endian and
Deflated Explicit VR Little Endian (every compressed transfer syntax is Explicit VR LE in the
data set header). Anything unusual (big endian, undefined-length sequences before the UIDs,
truncation) falls back to pydicom, so the result is the same, only slower.
"""
from __future__ import annotations

import hashlib
import struct
import zlib
from io import BytesIO
from pathlib import Path

from pydicom import dcmread

from axiom_dagster.dicom.uids import InvalidUID
from axiom_dagster.ingest.landing import InstanceIds
from axiom_dagster.ingest.part10 import LONG_VRS as _LONG_VRS
from axiom_dagster.ingest.part10 import Unreadable, part10_layout
from axiom_dagster.ingest.redaction import describe_exception

IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
DEFLATED_LE = "1.2.840.10008.1.2.1.99"
EXPLICIT_BE = "1.2.840.10008.1.2.2"
IMPLEMENTATION_CLASS_UID = "2.25." + str(int.from_bytes(hashlib.sha256(b"axiom-dagster|realtime").digest()[:16], "big"))
IMPLEMENTATION_VERSION = "AXIOM_RT_010"

_WANTED = {
    0x00080016: "sop_class",
    0x00080018: "sop",
    0x0020000D: "study",
    0x0020000E: "series",
}
_LAST = 0x0020000E
_HEAD_BYTES = 256 * 1024  # decompressed prefix of a deflated data set we look at


class _Fallback(Exception):
    pass


def dataset_uids(data: bytes | memoryview, transfer_syntax: str) -> dict[str, str]:
    """The raw SOP Class, SOP Instance, Study and Series UIDs of an encoded data set."""
    try:
        if transfer_syntax == IMPLICIT_LE:
            return _walk(memoryview(data), implicit=True)
        if transfer_syntax == DEFLATED_LE:
            d = zlib.decompressobj(-zlib.MAX_WBITS)
            head = d.decompress(bytes(data), _HEAD_BYTES)
            return _walk(memoryview(head), implicit=False)
        if transfer_syntax == EXPLICIT_BE:
            raise _Fallback
        return _walk(memoryview(data), implicit=False)
    except (_Fallback, struct.error, IndexError, UnicodeDecodeError, zlib.error):
        return _pydicom_uids(data, transfer_syntax)


def _walk(buf: memoryview, implicit: bool) -> dict[str, str]:
    found: dict[str, str] = {}
    pos, end = 0, len(buf)
    unpack_hh = struct.Struct("<HH").unpack_from
    unpack_i = struct.Struct("<I").unpack_from
    unpack_h = struct.Struct("<H").unpack_from
    while pos + 8 <= end:
        group, elem = unpack_hh(buf, pos)
        tag = (group << 16) | elem
        if tag > _LAST:
            break
        if implicit:
            length = unpack_i(buf, pos + 4)[0]
            pos += 8
        else:
            vr = bytes(buf[pos + 4:pos + 6])
            if vr in _LONG_VRS:
                if pos + 12 > end:
                    raise _Fallback
                length = unpack_i(buf, pos + 8)[0]
                pos += 12
            else:
                length = unpack_h(buf, pos + 6)[0]
                pos += 8
        if length == 0xFFFFFFFF:
            raise _Fallback  # undefined-length sequence before the UIDs: let pydicom walk it
        if pos + length > end:
            raise _Fallback
        name = _WANTED.get(tag)
        if name:
            found[name] = bytes(buf[pos:pos + length]).decode("ascii").strip("\x00 ")
        pos += length
    if len(found) < 4 and pos + 8 <= end:
        raise _Fallback
    return found


def _pydicom_uids(data: bytes | memoryview, transfer_syntax: str) -> dict[str, str]:
    part10 = b"".join((b"\x00" * 128, b"DICM", encode_file_meta("1.2", "1.2", transfer_syntax), bytes(data)))
    try:
        ds = dcmread(BytesIO(part10), stop_before_pixels=True,
                     specific_tags=["SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"])
        return _uids_of(ds)
    except Exception as exc:  # pydicom raises many types on damaged data
        raise Unreadable(f"unreadable data set: {describe_exception(exc)}") from None


def instance_ids(uids: dict[str, str], transfer_syntax: str) -> InstanceIds:
    """Validated ids (raises InvalidUID naming the attribute that is missing or invalid)."""
    return InstanceIds.validated(
        uids.get("study"), uids.get("series"), uids.get("sop"),
        uids.get("sop_class") or None, transfer_syntax,
    )


def _element(group: int, elem: int, vr: bytes, value: bytes) -> bytes:
    if vr in (b"OB",):
        return struct.pack("<HH2sHI", group, elem, vr, 0, len(value)) + value
    return struct.pack("<HH2sH", group, elem, vr, len(value)) + value


def _ui(value: str) -> bytes:
    raw = value.encode("ascii")
    return raw + b"\x00" if len(raw) % 2 else raw


def _text(value: str) -> bytes:
    raw = value.encode("ascii")
    return raw + b" " if len(raw) % 2 else raw


def encode_file_meta(sop_class: str, sop_instance: str, transfer_syntax: str, source_ae: str | None = None) -> bytes:
    """File Meta Information group (PS3.10 7.1), Explicit VR Little Endian, with group length."""
    body = b"".join((
        _element(0x0002, 0x0001, b"OB", b"\x00\x01"),
        _element(0x0002, 0x0002, b"UI", _ui(sop_class)),
        _element(0x0002, 0x0003, b"UI", _ui(sop_instance)),
        _element(0x0002, 0x0010, b"UI", _ui(transfer_syntax)),
        _element(0x0002, 0x0012, b"UI", _ui(IMPLEMENTATION_CLASS_UID)),
        _element(0x0002, 0x0013, b"SH", _text(IMPLEMENTATION_VERSION)),
        _element(0x0002, 0x0016, b"AE", _text(source_ae.strip())) if source_ae and source_ae.strip() else b"",
    ))
    return struct.pack("<HH2sHI", 0x0002, 0x0000, b"UL", 4, len(body)) + body


def part10_prefix(sop_class: str, sop_instance: str, transfer_syntax: str, source_ae: str | None = None) -> bytes:
    return b"\x00" * 128 + b"DICM" + encode_file_meta(sop_class, sop_instance, transfer_syntax, source_ae)


# ---- Part 10 files (STOW-RS parts) -------------------------------------------------------

def part10_ids(path: Path) -> tuple[InstanceIds, int]:
    """Validated ids of a Part 10 file and the offset where its data set starts. Reads the
    first 256 KB; when the UIDs are not found there, pydicom reads the file itself (never
    the whole file into memory: instances may be gigabytes)."""
    with open(path, "rb") as fh:
        head = fh.read(_HEAD_BYTES)
    offset, ts = part10_layout(head)
    data = head[offset:]
    if len(head) < _HEAD_BYTES and ts != DEFLATED_LE:
        uids = dataset_uids(data, ts)  # the whole data set is in `head`
    else:
        uids = None
        if ts not in (DEFLATED_LE, EXPLICIT_BE):
            try:
                uids = _walk(memoryview(data), implicit=ts == IMPLICIT_LE)
            except (_Fallback, struct.error, UnicodeDecodeError):
                uids = None
        elif ts == DEFLATED_LE:
            try:
                uids = dataset_uids(data, ts)  # inflates only the first 256 KB
            except Unreadable:
                uids = None
        if uids is None:
            uids = _pydicom_uids_of_file(path)
    return instance_ids(uids, ts), offset


def _pydicom_uids_of_file(path: Path) -> dict[str, str]:
    try:
        ds = dcmread(path, stop_before_pixels=True, defer_size=4096,
                     specific_tags=["SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"])
    except Exception as exc:  # pydicom raises many types on damaged data
        raise Unreadable(f"unreadable data set: {describe_exception(exc)}") from None
    return _uids_of(ds)


def _uids_of(ds) -> dict[str, str]:
    out = {}
    for key, kw in (("sop_class", "SOPClassUID"), ("sop", "SOPInstanceUID"),
                    ("study", "StudyInstanceUID"), ("series", "SeriesInstanceUID")):
        value = ds.get(kw)
        if value is not None:
            out[key] = str(value).strip("\x00 ")
    return out


__all__ = [
    "InvalidUID", "Unreadable", "dataset_uids", "encode_file_meta", "instance_ids",
    "part10_layout", "part10_ids", "part10_prefix",
]
