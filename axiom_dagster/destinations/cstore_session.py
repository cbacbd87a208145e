"""C-STOREs of already encoded data sets on an established pynetdicom association, one after
another, with the association's reactor paused for the whole run.

A fast path for the measured hot spot of our C-STORE SCU (pynetdicom 3.0.4, pinned):
`Association.send_c_store` pauses and resumes the association's reactor around every request,
and that reactor sleeps 1 ms per loop, so each C-STORE first waits up to 1 ms for it to pause;
it also re-reads the file meta with pydicom, and builds the seven-element command set as a
pydicom Dataset encoded twice (a fifth of the sender's CPU time per instance, py-spy). An SCU
association that only sends C-STOREs gives the reactor nothing to do between them, and the
command set is written directly (dicom/dimse_commands.py). The P-DATA primitives go through pynetdicom's DUL
state machine as before, fragmented like pynetdicom's DIMSE provider does (within the peer's
maximum PDU length). Decoding each response into pydicom Datasets took another quarter: a
plain C-STORE-RSP's four US fields are read here, anything else is left to pynetdicom. A
peer's abort or a closed connection wakes the waiting request as in send_c_store (the state
machine queues (None, None)). Tested against pynetdicom's own encoding and decoding, and
against real peers.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

from pynetdicom.pdu_primitives import P_DATA

from axiom_dagster.dicom.dimse_commands import (
    C_STORE_RSP,
    COMMAND_DATA_SET_TYPE,
    COMMAND_FIELD,
    MESSAGE_ID_BEING_RESPONDED_TO,
    NO_DATA_SET,
    STATUS,
    CommandError,
    command_set,
    decode_command,
    us,
)

# P-DATA message control headers (PS3.8 E.2): command/data set, last fragment or not.
COMMAND, COMMAND_LAST, DATA, DATA_LAST = b"\x01", b"\x03", b"\x00", b"\x02"


@contextmanager
def paused_reactor(assoc):
    """Hold the association reactor at its checkpoint (as send_c_store does per request)."""
    assoc._reactor_checkpoint.clear()
    while not assoc._is_paused and assoc.is_alive():
        time.sleep(0.0001)
    try:
        yield
    finally:
        assoc._reactor_checkpoint.set()


@dataclass(frozen=True)
class StoreResponse:
    """A C-STORE-RSP as read by `store_response` (what a delivery needs of it)."""

    message_id: int
    status: int


def store_response(command: bytes) -> StoreResponse | None:
    """Status and Message ID Being Responded To of a C-STORE-RSP command set (Implicit VR
    Little Endian, no data set); None for anything else, which pynetdicom then decodes."""
    try:
        fields = decode_command(command)
        if us(fields, COMMAND_FIELD) != C_STORE_RSP or us(fields, COMMAND_DATA_SET_TYPE) != NO_DATA_SET:
            return None
        return StoreResponse(us(fields, MESSAGE_ID_BEING_RESPONDED_TO), us(fields, STATUS))
    except CommandError:
        return None


class _FastResponses:
    """Stands in for the DIMSE provider's receive_primitive (called by the DUL thread): a
    C-STORE-RSP in one P-DATA (as every peer sends it: the command set is ~100 bytes) goes to
    the message queue as a StoreResponse; anything else to pynetdicom."""

    def __init__(self, dimse):
        self.dimse, self.library = dimse, dimse.receive_primitive

    def __call__(self, primitive) -> None:
        pdvs = primitive.presentation_data_value_list
        # Message control header xxxxxx11: the last (here: only) fragment of a command set.
        if self.dimse.message is None and len(pdvs) == 1 and pdvs[0][1][:1] and pdvs[0][1][0] & 3 == 3:
            response = store_response(pdvs[0][1][1:])
            if response is not None:
                self.dimse.msg_queue.put((pdvs[0][0], response))
                return
        self.library(primitive)


@contextmanager
def fast_responses(assoc):
    assoc.dimse.receive_primitive = _FastResponses(assoc.dimse)
    try:
        yield
    finally:
        del assoc.dimse.receive_primitive  # the class's method again


def c_store(assoc, context_id: int, sop_class: str, sop_instance: str, data: bytes, msg_id: int) -> int | None:
    """Send one C-STORE-RQ whose data set is `data` (encoded in the context's transfer
    syntax) and wait for its response: the DIMSE status, or None when no response came
    (timeout, abort, closed connection; the association is then aborted)."""
    command = command_set(sop_class, sop_instance, msg_id)
    for pdata in p_data(context_id, command, data, assoc.dimse.maximum_pdu_size):
        assoc.dul.send_pdu(pdata)
    _, rsp = assoc.dimse.get_msg(block=True)
    if rsp is None:
        assoc.abort()  # sends A-ABORT if the connection is still there; ends the reactors
        return None
    if isinstance(rsp, StoreResponse):
        if rsp.message_id != msg_id:  # out of step with the peer: end the association
            assoc.abort()
            raise ValueError("C-STORE-RSP for another request")
        return rsp.status
    return getattr(assoc._check_received_status(rsp), "Status", None)


def _fragments(data: bytes, max_pdu: int) -> list[bytes]:
    if max_pdu == 0:  # the peer set no limit
        return [data]
    size = max_pdu - 6  # a PDV item adds 6 bytes (length, context ID, control header)
    return [data[i : i + size] for i in range(0, len(data), size)] or [b""]


def p_data(context_id: int, command: bytes, data: bytes, max_pdu: int) -> Iterator[P_DATA]:
    """One P-DATA primitive per fragment: the command set, then the data set."""
    for part, more, last in ((command, COMMAND, COMMAND_LAST), (data, DATA, DATA_LAST)):
        fragments = _fragments(part, max_pdu)
        for n, fragment in enumerate(fragments, 1):
            pdata = P_DATA()
            pdata.presentation_data_value_list.append((context_id, (last if n == len(fragments) else more) + fragment))
            yield pdata
