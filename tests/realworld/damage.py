"""Damaged copies of DICOM files, byte-level and deterministic (seeded), for robustness tests.

Each damage keeps a file's element structure unless it is meant to break it, so a copy tests
one thing: a value pydicom cannot convert, a wrong VR, a cut data set, a damaged header.
"""
from __future__ import annotations

import random
import struct
from pathlib import Path

# Test PHI: written into damaged copies; no log line, reason or HTTP detail may contain them.
PHI_NAME = "CANARYPHI^SECRETNAME"
PHI_ID = "CANARYPHI-0001"
PHI_VALUES = (PHI_NAME.split("^")[0], "SECRETNAME", PHI_ID)


def find_element(data: bytes, group: int, elem: int, start: int = 132) -> int:
    """Offset of an explicit-VR-LE element header (gggg,eeee) + 2-letter VR, or -1."""
    needle = struct.pack("<HH", group, elem)
    pos = data.find(needle, start)
    while pos != -1 and not data[pos + 4:pos + 6].isalpha():
        pos = data.find(needle, pos + 1)
    return pos


def with_vr(data: bytes, group: int, elem: int, vr: bytes) -> bytes:
    """The element's VR bytes replaced (same length field layout for short VRs)."""
    pos = find_element(data, group, elem)
    if pos < 0:
        return data
    return data[:pos + 4] + vr + data[pos + 6:]


def with_value(data: bytes, group: int, elem: int, value: bytes, start: int = 132) -> bytes:
    """The element's value replaced; the length field follows (short-VR elements only)."""
    pos = find_element(data, group, elem, start)
    if pos < 0:
        return data
    if len(value) % 2:
        value += b" "
    old = struct.unpack_from("<H", data, pos + 6)[0]
    return data[:pos + 6] + struct.pack("<H", len(value)) + value + data[pos + 8 + old:]


def with_sop_instance_uid(data: bytes, uid: bytes) -> bytes:
    """A new SOP Instance UID in the data set and in the File Meta Information (with the
    meta group length adjusted), so a sender's request and the data set agree."""
    out = with_value(data, 0x0008, 0x0018, uid)
    meta = find_element(out, 0x0002, 0x0003, start=0)
    group_length = find_element(out, 0x0002, 0x0000, start=0)
    if meta < 0 or group_length < 0:
        return out
    old = struct.unpack_from("<H", out, meta + 6)[0]
    out = with_value(out, 0x0002, 0x0003, uid, start=0)
    new = struct.unpack_from("<H", out, meta + 6)[0]
    value = struct.unpack_from("<I", out, group_length + 8)[0] + new - old
    return out[:group_length + 8] + struct.pack("<I", value) + out[group_length + 12:]


def truncated_in_last_element(data: bytes, rng: random.Random) -> bytes:
    return data[: len(data) - rng.randint(1, min(600, len(data) // 4))]


DAMAGES = {
    # value pydicom cannot convert (IS overflow), caught in the pipeline per instance
    "series_number_1e400": lambda d, r: with_value(d, 0x0020, 0x0011, b"1e400"),
    # unknown VR on PatientID: pydicom raises NotImplementedError when the value is read
    "patient_id_vr_xx": lambda d, r: with_vr(d, 0x0010, 0x0020, b"XX"),
    "modality_vr_xx": lambda d, r: with_vr(d, 0x0008, 0x0060, b"XX"),
    "bits_stored_vr_da": lambda d, r: with_vr(d, 0x0028, 0x0101, b"DA"),
    "study_date_garbage": lambda d, r: with_value(d, 0x0008, 0x0020, b"19X7-1\x01"),
    "study_date_old_style": lambda d, r: with_value(d, 0x0008, 0x0020, b"1997.04.24"),
    "patient_name_phi_bad_vr": lambda d, r: with_vr(
        with_value(d, 0x0010, 0x0010, PHI_NAME.encode()), 0x0010, 0x0010, b"UI"),
    "patient_id_phi_bad_uid": lambda d, r: with_value(d, 0x0020, 0x000D, PHI_ID.encode()),
    "sop_uid_phi": lambda d, r: with_value(d, 0x0008, 0x0018, PHI_ID.encode()),
    # structure broken: rejected at ingest
    "truncated_last_element": truncated_in_last_element,
    "truncated_header": lambda d, r: d[: 132 + r.randint(20, 400)],
    "empty": lambda d, r: b"",
    "not_dicom": lambda d, r: b"this is a report, not DICOM\n" * 10,
    "flipped_bytes": lambda d, r: _flip(d, r),
}


def _flip(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    for _ in range(8):
        i = rng.randrange(132, min(len(out), 2000)) if len(out) > 140 else 0
        if out:
            out[i] ^= 0xFF
    return bytes(out)


def damaged_copies(sources: list[Path], out: Path, count: int, seed: int = 8, kinds=None,
                   unique: bool = True) -> list[tuple[Path, str]]:
    """`count` damaged copies of `sources` (round robin over the damage kinds), seeded. With
    `unique`, each copy gets its own SOP Instance UID (else copies are re-sends)."""
    rng = random.Random(seed)
    out.mkdir(parents=True, exist_ok=True)
    kinds = sorted(kinds or DAMAGES)
    made = []
    for i in range(count):
        src = sources[i % len(sources)]
        kind = kinds[i % len(kinds)]
        target = out / f"damaged-{i:05d}-{kind}.dcm"
        data = src.read_bytes()
        if unique:
            data = with_sop_instance_uid(data, f"2.25.{seed}{i:06d}".encode())
        target.write_bytes(DAMAGES[kind](data, rng))
        made.append((target, kind))
    return made
