"""C-STORE requests read straight off the socket of an established pynetdicom association.

pynetdicom 3.0.4 (pinned) takes every received P-DATA PDU through its DUL thread in 4 KB
reads, its state machine, its DIMSE provider (which assembles the message and decodes the
command set into a pydicom Dataset), a queue to the association thread, the C-STORE handler,
and back: the response command set is built with pydicom and queued to the DUL thread to be
sent. Profiled, that was more than half of a C-STORE receiver's CPU time per instance, and
what kept our listener and C-GET retrieval far below DCMTK on the same machine.

`receive_stores` replaces the PDU read of one association's DUL thread. A DIMSE message whose
command is a C-STORE-RQ (or, for an SCP, a C-ECHO-RQ) is read PDV by PDV in that thread: the
data set fragments go to the handler's writer as they arrive (a spool file for the realtime
listener, memory for a C-GET) and the response is written to the socket by the same thread,
so memory stays bounded for instances of any size. Every other PDU (A-RELEASE, A-ABORT) and
every other DIMSE message (the C-GET-RSPs of a retrieval, ...) is handed to pynetdicom as it
would have read it, so association negotiation, release, abort, timeouts and all other
services stay pynetdicom's. The association stays in Sta6 (data transfer), as for any P-DATA.
A broken message (unknown presentation context, command fragment inside a data set, item
overrunning its PDU) raises inside the DUL loop, which then aborts the association as it does
for any PDU it cannot decode.
"""
from __future__ import annotations

import logging
import struct
import time
from typing import Protocol

from . import dimse_commands as dc

log = logging.getLogger("axiom.dicom.store_receiver")

CHUNK = 1 << 20  # data set bytes read from the socket per call, at most
MAX_COMMAND = 1 << 16  # command sets are ~100-300 bytes; anything this long is not one
STATUS_OUT_OF_RESOURCES = 0xA700
PENDING = frozenset({0xFF00, 0xFF01})
# A C-GET/C-MOVE whose pending responses are read here passes one to pynetdicom at least this
# often (seconds; less when its DIMSE timeout is shorter), so its timeout still sees a live peer.
PENDING_PASS_EVERY = 1.0


class StoreWriter(Protocol):
    """Where one received data set goes, fragment by fragment."""

    def write(self, data: memoryview) -> None: ...

    def finish(self) -> tuple[int, str]:
        """All fragments written: the DIMSE status to answer and an Error Comment ('' for none)."""

    def discard(self) -> None:
        """The data set will not be completed (association ended, earlier failure)."""


class StoreHandler(Protocol):
    def begin(self, assoc, sop_class: str, sop_instance: str, transfer_syntax: str) -> StoreWriter: ...


class ProtocolViolation(Exception):
    """Raised in pynetdicom's DUL loop, which answers it with A-ABORT."""


class _Closed(Exception):
    """The peer closed the connection."""


class _Message:
    __slots__ = ("context_id", "msg_id", "sop_class", "sop_instance", "writer", "failure")

    def __init__(self, context_id: int, msg_id: int, sop_class: str, sop_instance: str):
        self.context_id, self.msg_id = context_id, msg_id
        self.sop_class, self.sop_instance = sop_class, sop_instance
        self.writer: StoreWriter | None = None
        self.failure: tuple[int, str] | None = None

    def fail(self, exc: Exception) -> None:
        """The writer failed (disk full, ...): the rest of the data set is read and dropped,
        and the request is answered with Out of Resources."""
        self.failure = (STATUS_OUT_OF_RESOURCES, f"not stored: {type(exc).__name__}")
        log.warning("receiving a data set failed", extra={"error": type(exc).__name__})
        self.discard()

    def discard(self) -> None:
        writer, self.writer = self.writer, None
        if writer is not None:
            try:
                writer.discard()
            except Exception:  # cleanup of a failed transfer must not end the association
                log.exception("discarding a partial data set failed")


class StoreReceiver:
    """Installed on one association by `receive_stores`; runs in its DUL thread only."""

    def __init__(self, assoc, handler: StoreHandler, answer_echo: bool, quiet_pending: frozenset[int] = frozenset()):
        self.assoc, self.dul = assoc, assoc.dul
        self.handler, self.answer_echo = handler, answer_echo
        self.quiet_pending = quiet_pending  # response command fields whose pending responses stay here
        self.pending_read = 0  # pending responses read here and not passed on
        self._pending_passed = 0.0  # time.monotonic() when one was last passed to pynetdicom
        self.message: _Message | None = None  # ours, data set still arriving
        self.pending: list[bytes] = []  # PDV items of a command set still arriving
        self.pending_size = 0
        self.foreign = False  # pynetdicom is assembling a message (until its last fragment)
        self.foreign_command = b""
        self._buffer = memoryview(bytearray(CHUNK))
        self._timeout_set = False

    # ---- pynetdicom's DUL calls this instead of its _read_pdu_data ----------------------

    def read_pdu(self) -> None:
        try:
            self._read_pdu()
        except (_Closed, OSError):
            self.discard()
            self.dul.event_queue.put("Evt17")  # transport connection closed
        except BaseException:
            self.discard()
            raise

    def discard(self) -> None:
        if self.message is not None:
            self.message.discard()
            self.message = None

    # ---- reading ------------------------------------------------------------------------

    def _socket(self):
        return self.dul.socket.socket

    def _exact(self, size: int) -> bytes:
        view = memoryview(bytearray(size))
        got, sock = 0, self._socket()
        while got < size:
            n = sock.recv_into(view[got:])
            if n == 0:
                raise _Closed
            got += n
        return view.obj  # the bytearray

    def _read_pdu(self) -> None:
        if not self._timeout_set:  # a peer stalling inside a PDU ends the association
            self._socket().settimeout(self.assoc.network_timeout)
            self._timeout_set = True
        header = self._exact(6)
        pdu_type, _, length = struct.unpack(">BBL", header)
        if not 0x01 <= pdu_type <= 0x07:
            self.dul.event_queue.put("Evt19")  # unrecognised PDU, as pynetdicom answers it
            return
        if pdu_type != dc.P_DATA_TF:
            self._to_pynetdicom(bytes(header) + bytes(self._exact(length)))
            return
        if self.foreign or self.dul.state_machine.current_state != "Sta6":
            self._to_pynetdicom_pdv(bytes(self._exact(length)))
            return
        left = length
        while left:
            if left < 6:
                raise ProtocolViolation("P-DATA-TF PDU ends inside a PDV item header")
            item = self._exact(6)
            item_length, context_id, control = struct.unpack(">LBB", item)
            left -= 6
            size = item_length - 2
            if size < 0 or size > left:
                raise ProtocolViolation("PDV item length overruns its P-DATA-TF PDU")
            left -= size
            if self.message is not None:
                self._data_fragment(context_id, control, size)
            elif self.foreign or not control & dc.IS_COMMAND:
                # pynetdicom's message (or a data set without a command, which it rejects)
                self._to_pynetdicom_pdv(bytes(item) + bytes(self._exact(size)) + bytes(self._exact(left)))
                return
            else:
                self._command_fragment(bytes(item), control, size)
                if self.foreign and left:
                    self._to_pynetdicom_pdv(bytes(self._exact(left)))
                    return

    def _command_fragment(self, item: bytes, control: int, size: int) -> None:
        self.pending_size += size
        if self.pending_size > MAX_COMMAND:
            raise ProtocolViolation("command set longer than 64 KiB")
        self.pending.append(item + bytes(self._exact(size)))
        if not control & dc.IS_LAST:
            return
        pending, self.pending, self.pending_size = self.pending, [], 0
        context_id = pending[0][4]
        command = b"".join(p[6:] for p in pending)
        fields = self._fields(context_id, command)
        if fields is None or not self._ours(fields):  # pynetdicom's until the message ends
            if fields is None or not self._quiet_pending(fields):
                self._to_pynetdicom_pdv(b"".join(pending))
            return
        field = dc.us(fields, dc.COMMAND_FIELD)
        msg_id = dc.us(fields, dc.MESSAGE_ID)
        if field == dc.C_ECHO_RQ:
            self._respond(context_id, dc.response_set(dc.C_ECHO_RSP, msg_id, 0x0000, dc.text(fields, dc.AFFECTED_SOP_CLASS_UID)))
            return
        message = _Message(context_id, msg_id, dc.text(fields, dc.AFFECTED_SOP_CLASS_UID),
                           dc.text(fields, dc.AFFECTED_SOP_INSTANCE_UID))
        ts = str(self.assoc._accepted_cx[context_id].transfer_syntax[0])
        try:
            message.writer = self.handler.begin(self.assoc, message.sop_class, message.sop_instance, ts)
        except Exception as exc:
            message.fail(exc)
        self.message = message

    def _fields(self, context_id: int, command: bytes) -> dict[int, bytes] | None:
        """The command set's fields, or None (not on an accepted presentation context, or not
        decodable here): pynetdicom's to read and answer."""
        if context_id not in self.assoc._accepted_cx:
            return None
        try:
            return dc.decode_command(command)
        except dc.CommandError:
            return None

    def _ours(self, fields: dict[int, bytes]) -> bool:
        """A C-STORE-RQ with a data set, or a C-ECHO-RQ we answer; anything else stays pynetdicom's."""
        try:
            field = dc.us(fields, dc.COMMAND_FIELD)
            dc.us(fields, dc.MESSAGE_ID)
            has_data = dc.us(fields, dc.COMMAND_DATA_SET_TYPE) != dc.NO_DATA_SET
        except dc.CommandError:
            return False
        return (field == dc.C_STORE_RQ and has_data) or (field == dc.C_ECHO_RQ and self.answer_echo and not has_data)

    def _quiet_pending(self, fields: dict[int, bytes]) -> bool:
        """True for a pending C-GET/C-MOVE response without a data set that is only counted
        here: pynetdicom's handling of each one (PDU and command set decoding with pydicom,
        a queue and a thread switch to the association's reactor) was a third of a C-GET
        retrieval's CPU per instance, and a retrieval only uses the final response. One is
        still passed on every PENDING_PASS_EVERY seconds: pynetdicom's DIMSE timeout runs
        from the last message it saw."""
        if not self.quiet_pending:
            return False
        try:
            if dc.us(fields, dc.COMMAND_FIELD) not in self.quiet_pending or dc.us(fields, dc.STATUS) not in PENDING:
                return False
            if dc.us(fields, dc.COMMAND_DATA_SET_TYPE) != dc.NO_DATA_SET:
                return False
        except dc.CommandError:
            return False
        now = time.monotonic()
        timeout = self.assoc.dimse_timeout
        every = PENDING_PASS_EVERY if not timeout else min(PENDING_PASS_EVERY, timeout / 4)
        if now - self._pending_passed >= every:
            self._pending_passed = now
            return False
        self.pending_read += 1
        return True

    def _data_fragment(self, context_id: int, control: int, size: int) -> None:
        message = self.message
        if control & dc.IS_COMMAND or context_id != message.context_id:
            raise ProtocolViolation("a command or another presentation context inside a data set")
        sock, buffer = self._socket(), self._buffer
        while size:
            n = sock.recv_into(buffer[:min(size, CHUNK)])
            if n == 0:
                raise _Closed
            size -= n
            if message.writer is not None:
                try:
                    message.writer.write(buffer[:n])
                except Exception as exc:
                    message.fail(exc)
        if control & dc.IS_LAST:
            self.message = None
            status, comment = message.failure or self._finish(message)
            self._respond(message.context_id, dc.response_set(
                dc.C_STORE_RSP, message.msg_id, status, message.sop_class, message.sop_instance, comment))

    @staticmethod
    def _finish(message: _Message) -> tuple[int, str]:
        writer, message.writer = message.writer, None
        try:
            return writer.finish()
        except Exception as exc:
            message.writer = writer
            message.fail(exc)
            return message.failure

    def _respond(self, context_id: int, command: bytes) -> None:
        self.dul.socket.send(dc.command_pdus(context_id, command, self.assoc.dimse.maximum_pdu_size))

    # ---- everything else: pynetdicom ----------------------------------------------------

    def _to_pynetdicom_pdv(self, items: bytes) -> None:
        """PDV items (of pynetdicom's message) framed as a P-DATA-TF PDU of their own."""
        self._track_foreign(items)
        self._to_pynetdicom(struct.pack(">BBL", dc.P_DATA_TF, 0, len(items)) + items)

    def _to_pynetdicom(self, pdu: bytes) -> None:
        """As pynetdicom's own _read_pdu_data continues after reading a PDU."""
        try:
            decoded, event = self.dul._decode_pdu(pdu)
        except Exception:
            log.warning("undecodable PDU received", extra={"pdu_type": pdu[0]})
            self.dul.event_queue.put("Evt19")  # unrecognised or invalid PDU
            return
        self.dul.event_queue.put(event)
        self.dul._recv_pdu.put(decoded)

    def _track_foreign(self, items: bytes) -> None:
        """Follow pynetdicom's message through its PDV items, to know where it ends."""
        pos = 0
        while pos + 6 <= len(items):
            item_length, _context, control = struct.unpack_from(">LBB", items, pos)
            fragment = items[pos + 6:pos + 4 + item_length]
            pos += 4 + item_length
            if control & dc.IS_COMMAND:
                self.foreign, self.foreign_command = True, self.foreign_command + fragment
                if control & dc.IS_LAST:
                    command, self.foreign_command = self.foreign_command, b""
                    try:
                        no_data = dc.us(dc.decode_command(command), dc.COMMAND_DATA_SET_TYPE) == dc.NO_DATA_SET
                    except dc.CommandError:
                        no_data = True
                    if no_data:
                        self.foreign = False
            elif control & dc.IS_LAST:
                self.foreign = False


def receive_stores(assoc, handler: StoreHandler, answer_echo: bool = False,
                   quiet_pending: frozenset[int] = frozenset()) -> StoreReceiver:
    """Receive this association's C-STORE requests (and C-ECHO requests with `answer_echo`)
    with `handler`. Call before the peer can send P-DATA: for an acceptor before its DUL
    thread starts, for a requestor once established and before the first request.
    `quiet_pending`: response command fields (C_GET_RSP) whose pending responses are read
    here, not by pynetdicom (see StoreReceiver._quiet_pending)."""
    receiver = StoreReceiver(assoc, handler, answer_echo, quiet_pending)
    assoc.dul._read_pdu_data = receiver.read_pdu
    target = getattr(assoc.dul, "_target", None)
    if target is not None and assoc.dul.ident is None:  # not started: discard a partial data set when it ends
        def run() -> None:
            try:
                target()
            finally:
                receiver.discard()
        assoc.dul._target = run
    return receiver
