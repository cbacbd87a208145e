"""DIMSE command sets (PS3.7 9.3, E.1) read and written directly, and the P-DATA-TF PDU that
carries one (PS3.8 9.3.5).

A command set is a handful of group 0000 elements in Implicit VR Little Endian. pynetdicom
builds and parses each one as a pydicom Dataset, which measured at a fifth or more of the CPU
time per C-STORE on both sides of an association; the fast paths (destinations/cstore_session.py,
dicom/store_receiver.py) use these instead. Tested against pynetdicom's own encoding.
"""
from __future__ import annotations

import struct

# Command Field (0000,0100)
C_STORE_RQ, C_STORE_RSP = 0x0001, 0x8001
C_ECHO_RQ, C_ECHO_RSP = 0x0030, 0x8030
C_GET_RSP, C_MOVE_RSP = 0x8010, 0x8021
RESPONSE_BIT = 0x8000
# Command Data Set Type (0000,0800): 0x0101 means no data set, anything else means one follows.
DATA_SET_PRESENT, NO_DATA_SET = 0x0001, 0x0101
MEDIUM_PRIORITY = 2

# Element numbers in group 0000
AFFECTED_SOP_CLASS_UID = 0x0002
COMMAND_FIELD = 0x0100
MESSAGE_ID = 0x0110
MESSAGE_ID_BEING_RESPONDED_TO = 0x0120
PRIORITY = 0x0700
COMMAND_DATA_SET_TYPE = 0x0800
STATUS = 0x0900
ERROR_COMMENT = 0x0902
AFFECTED_SOP_INSTANCE_UID = 0x1000

# P-DATA message control header (PS3.8 E.2): bit 0 command/data set, bit 1 last fragment.
IS_COMMAND, IS_LAST = 0x01, 0x02
P_DATA_TF = 0x04


class CommandError(ValueError):
    """A command set that is not well formed."""


def decode_command(data: bytes | bytearray | memoryview) -> dict[int, bytes]:
    """The command set's elements as {element number: value bytes}."""
    data = bytes(data)
    fields, pos, end = {}, 0, len(data)
    while pos < end:
        if pos + 8 > end:
            raise CommandError("command set cut short in an element header")
        group, elem, length = struct.unpack_from("<HHL", data, pos)
        pos += 8
        if group != 0x0000 or pos + length > end:
            raise CommandError(f"command set element ({group:04X},{elem:04X}) is not in group 0000 or overruns")
        fields[elem] = data[pos:pos + length]
        pos += length
    return fields


def us(fields: dict[int, bytes], elem: int) -> int:
    value = fields.get(elem)
    if value is None or len(value) != 2:
        raise CommandError(f"command set element (0000,{elem:04X}) missing or not US")
    return struct.unpack("<H", value)[0]


def text(fields: dict[int, bytes], elem: int) -> str:
    """A UI or LO value without its padding ('' when absent). Latin-1: any bytes a peer sent
    (a damaged UID included) come back unchanged when echoed in the response."""
    return fields.get(elem, b"").decode("latin-1").rstrip("\x00 ")


def _bytes(value: str) -> bytes:
    return value.encode("latin-1", "replace")


def element(elem: int, value: bytes) -> bytes:
    if len(value) % 2:
        value += b"\x00"  # UI values are padded with NUL to even length (LO is padded with a space by callers)
    return struct.pack("<HHL", 0x0000, elem, len(value)) + value


def _us(value: int) -> bytes:
    return struct.pack("<H", value)


def encode_command(*elements: bytes) -> bytes:
    """Encoded elements (in ascending tag order) behind their Command Group Length."""
    body = b"".join(elements)
    return element(0x0000, struct.pack("<L", len(body))) + body


def command_set(sop_class: str, sop_instance: str, msg_id: int, priority: int = MEDIUM_PRIORITY) -> bytes:
    """The C-STORE-RQ command set (PS3.7 9.3.1.1), as pynetdicom encodes it for a request
    with a data set and no Move Originator."""
    return encode_command(
        element(AFFECTED_SOP_CLASS_UID, _bytes(sop_class)),
        element(COMMAND_FIELD, _us(C_STORE_RQ)),
        element(MESSAGE_ID, _us(msg_id)),
        element(PRIORITY, _us(priority)),
        element(COMMAND_DATA_SET_TYPE, _us(DATA_SET_PRESENT)),
        element(AFFECTED_SOP_INSTANCE_UID, _bytes(sop_instance)),
    )


def response_set(command_field: int, msg_id: int, status: int, sop_class: str = "", sop_instance: str = "",
                 error_comment: str = "") -> bytes:
    """A response without a data set (C-STORE-RSP, C-ECHO-RSP, ...; PS3.7 9.3)."""
    parts = []
    if sop_class:
        parts.append(element(AFFECTED_SOP_CLASS_UID, _bytes(sop_class)))
    parts += [element(COMMAND_FIELD, _us(command_field)), element(MESSAGE_ID_BEING_RESPONDED_TO, _us(msg_id)),
              element(COMMAND_DATA_SET_TYPE, _us(NO_DATA_SET)), element(STATUS, _us(status))]
    if error_comment:
        comment = error_comment.encode("ascii", "replace")[:64]
        parts.append(element(ERROR_COMMENT, comment + b" " * (len(comment) % 2)))
    if sop_instance:
        parts.append(element(AFFECTED_SOP_INSTANCE_UID, _bytes(sop_instance)))
    return encode_command(*parts)


def command_pdus(context_id: int, command: bytes, max_pdu: int) -> bytes:
    """A command set as P-DATA-TF PDUs (several only when the peer's maximum PDU length is
    smaller than the command), ready to be written to the socket."""
    size = len(command) if max_pdu == 0 else max(1, max_pdu - 6)  # a PDV item adds 6 bytes
    out = []
    for start in range(0, len(command), size):
        fragment = command[start:start + size]
        control = IS_COMMAND | (IS_LAST if start + size >= len(command) else 0)
        item = struct.pack(">LBB", len(fragment) + 2, context_id, control) + fragment
        out.append(struct.pack(">BBL", P_DATA_TF, 0, len(item)) + item)
    return b"".join(out)
