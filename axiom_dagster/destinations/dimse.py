"""C-STORE SCU: one association per study (per call) to a DICOM peer.

Presentation contexts are proposed only for the SOP classes and transfer syntaxes the study
holds, each as it is stored, plus one Explicit/Implicit VR Little Endian context per SOP class
that has uncompressed instances: when the peer refuses what we hold, the instance is
transcoded to what it accepted. A file sent as stored goes from disk without being decoded.
TCP_NODELAY is set on the socket (pynetdicom leaves Nagle on: ~40 ms stall per C-STORE).
The data set bytes are sent with the association's reactor paused for the whole study
(cstore_session: pynetdicom's send_c_store waits up to 1 ms per request for it), and each
confirmed instance carries the SHA-256 of exactly the bytes sent (for the audit log).
"""
from __future__ import annotations

import hashlib
import logging
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path

from pydicom import dcmread
from pydicom.filereader import read_file_meta_info
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, evt
from pynetdicom._handlers import (
    standard_dimse_recv_handler,
    standard_dimse_sent_handler,
    standard_pdu_recv_handler,
    standard_pdu_sent_handler,
)
from pynetdicom.dsutils import encode, split_dataset
from pynetdicom.presentation import build_context

from axiom_dagster.config.destinations import DicomDestination
from axiom_dagster.destinations.base import DestinationUnreachable
from axiom_dagster.destinations.cstore_session import c_store, fast_responses, paused_reactor
from axiom_dagster.dicom.file_meta import NotPlainPart10, read_file_meta
from axiom_dagster.store.deliveries import DueDelivery, Outcome

# pynetdicom logs every association at INFO with AE titles; one line per batch is ours.
logging.getLogger("pynetdicom").setLevel(logging.WARNING)
# pynetdicom's standard handlers format a DEBUG line for every PDU and DIMSE message (~7 %
# of a C-STORE's CPU time); unbound from our associations once established.
_CHATTY = [(evt.EVT_DIMSE_RECV, standard_dimse_recv_handler), (evt.EVT_DIMSE_SENT, standard_dimse_sent_handler),
           (evt.EVT_PDU_RECV, standard_pdu_recv_handler), (evt.EVT_PDU_SENT, standard_pdu_sent_handler)]

MAX_CONTEXTS = 128  # PS3.8: at most 128 presentation contexts per association
# What can be transcoded by re-encoding alone (pynetdicom converts between these two; Big
# Endian, retired, would need pixel byte swapping and is sent only as stored).
FALLBACK = [ExplicitVRLittleEndian, ImplicitVRLittleEndian]
UNCOMPRESSED = set(FALLBACK)
# Success, and the storage warnings (coercion, element discarded, does not match SOP class).
CONFIRMING = {0x0000, 0xB000, 0xB006, 0xB007}
DUPLICATE = 0x0111  # Duplicate SOP Instance: the peer has it already
REACTOR_DELAY = 0.0005  # seconds; pynetdicom 3.0.4's default is 0.001
HEAD_BYTES = 16384  # enough for any ordinary File Meta Information group


@dataclass(frozen=True)
class _Staged:
    item: DueDelivery
    sop_class: str
    sop_instance: str
    transfer_syntax: str


def _stage(item: DueDelivery) -> _Staged:
    """SOP class, instance and transfer syntax from the staged file's meta (its head only)."""
    with open(item.source_path, "rb") as fh:
        head = fh.read(HEAD_BYTES)
    try:
        meta = read_file_meta(head)
        return _Staged(item, meta.sop_class, meta.sop_instance, meta.transfer_syntax)
    except NotPlainPart10:
        fm = read_file_meta_info(item.source_path)
        return _Staged(item, str(fm.MediaStorageSOPClassUID), str(fm.MediaStorageSOPInstanceUID), str(fm.TransferSyntaxUID))


def encoded_dataset(path: str, stored: str, target: str) -> bytes:
    """The data set to send: the file's bytes after its meta when sent as stored (never
    decoded), else re-encoded in `target` by pynetdicom's encoder (as send_c_store would)."""
    if target == stored:
        data = Path(path).read_bytes()
        try:
            offset = read_file_meta(data).offset
        except NotPlainPart10:
            offset = split_dataset(Path(path))[1]
        return data[offset:]
    syntax = UID(target)
    encoded = encode(dcmread(path), syntax.is_implicit_VR, syntax.is_little_endian, syntax.is_deflated)
    if encoded is None:
        raise ValueError("pynetdicom could not encode the data set")
    return encoded


def _context_count(held: dict[str, set[str]], s: _Staged) -> int:
    """How many contexts propose() would build for `held` plus `s`."""
    count = 0
    for sop_class, syntaxes in held.items():
        if sop_class == s.sop_class:
            syntaxes = syntaxes | {s.transfer_syntax}
        count += len(syntaxes) + bool(syntaxes & UNCOMPRESSED)
    if s.sop_class not in held:
        count += 1 + (s.transfer_syntax in UNCOMPRESSED)
    return count


def _nodelay(event) -> None:
    event.assoc.dul.socket.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def associate(dest: DicomDestination, ae: AE, tls: ssl.SSLContext | None, **kwargs):
    """Request an association. Raises DestinationUnreachable when the peer cannot be reached
    or rejects us; returns the association and, when it was aborted after connecting (e.g. no
    proposed context accepted: a problem of these instances only), the reason."""
    connected = []

    def opened(event) -> None:
        connected.append(True)
        _nodelay(event)

    tls_args = (tls, dest.tls.server_hostname or dest.host) if tls else None
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = dest.timeout_seconds
    ae.connection_timeout = dest.timeout_seconds
    assoc = ae.associate(dest.host, dest.port, ae_title=dest.ae_title, tls_args=tls_args,
                         evt_handlers=[(evt.EVT_CONN_OPEN, opened)], **kwargs)
    if assoc.is_established:
        # pynetdicom's DUL reactor sleeps 1 ms whenever its queue is empty, twice per C-STORE
        # (request out, response in). 0.5 ms: shorter waits, yet few idle polls while a busy
        # peer answers (at 0.2 ms, 4 associations to Orthanc spent ~20 % more CPU polling).
        assoc.dul._run_loop_delay = REACTOR_DELAY
        if not logging.getLogger("pynetdicom").isEnabledFor(logging.DEBUG):
            for event, handler in _CHATTY:
                assoc.unbind(event, handler)
        return assoc, None
    reason = association_failure(assoc, bool(connected))
    if tls is not None and connected and not assoc.is_rejected:
        reason += "; TLS in use: the peer may have refused our client certificate"
    if not connected or assoc.is_rejected:
        raise DestinationUnreachable(reason)
    return assoc, reason


def tls_context(dest: DicomDestination) -> ssl.SSLContext | None:
    if dest.tls is None:
        return None
    tls = dest.tls
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(tls.ca_file) if tls.ca_file else None)
    if tls.cert_file:
        context.load_cert_chain(str(tls.cert_file), str(tls.key_file))
    return context


def propose(staged: list[_Staged]) -> list:
    """Contexts for what the study holds: each (SOP class, transfer syntax) as stored, and
    Explicit/Implicit VR LE for SOP classes with uncompressed instances."""
    held: dict[str, set[str]] = {}
    for s in staged:
        held.setdefault(s.sop_class, set()).add(s.transfer_syntax)
    contexts = []
    for sop_class, syntaxes in sorted(held.items()):
        contexts += [build_context(sop_class, ts) for ts in sorted(syntaxes)]
        if syntaxes & UNCOMPRESSED:
            contexts.append(build_context(sop_class, FALLBACK))
    return contexts


def association_failure(assoc, connected: bool) -> str:
    """The reason an association was not established, from the A-ASSOCIATE-RJ if any."""
    if not connected:
        return "cannot connect to the peer (connection refused or timed out)"
    if assoc.is_rejected:
        rj = assoc.acceptor.primitive
        return (f"A-ASSOCIATE-RJ: {rj.result_str}, source {rj.source_str}, reason {rj.reason_str} "
                f"(result {rj.result}, source {rj.result_source}, diagnostic {rj.diagnostic})")
    return "association aborted during negotiation (no proposed presentation context accepted, or A-ABORT)"


class CStoreSender:
    def __init__(self, dest: DicomDestination):
        self.dest = dest
        self.tls = tls_context(dest)
        self.location = f"{dest.ae_title}@{dest.host}:{dest.port}"

    def send(self, items: list[DueDelivery]) -> list[Outcome]:
        outcomes: list[Outcome] = []
        staged: list[_Staged] = []
        for item in items:
            try:
                staged.append(_stage(item))
            except FileNotFoundError:
                outcomes.append(Outcome(item.id, False, reason="staged copy is missing"))
            except Exception as exc:
                outcomes.append(Outcome(item.id, False, reason=f"staged copy unreadable: {type(exc).__name__}"))
        # More SOP classes than contexts allow (rare): several associations for the study.
        group: list[_Staged] = []
        held: dict[str, set[str]] = {}
        for s in staged:
            if _context_count(held, s) > MAX_CONTEXTS:
                outcomes += self._associate_and_store(group)
                group, held = [], {}
            group.append(s)
            held.setdefault(s.sop_class, set()).add(s.transfer_syntax)
        if group:
            outcomes += self._associate_and_store(group)
        return outcomes

    def _associate_and_store(self, staged: list[_Staged]) -> list[Outcome]:
        dest = self.dest
        ae = AE(ae_title=dest.calling_ae_title)
        ae.requested_contexts = propose(staged)
        assoc, failure = associate(dest, ae, self.tls, max_pdu=dest.max_pdu)
        if failure:
            return [Outcome(s.item.id, False, reason=failure) for s in staged]
        try:
            return self._store_all(assoc, staged)
        finally:
            if assoc.is_established:
                assoc.release()

    def _store_all(self, assoc, staged: list[_Staged]) -> list[Outcome]:
        accepted = {(cx.abstract_syntax, cx.transfer_syntax[0]): cx.context_id for cx in assoc.accepted_contexts}
        outcomes = []
        with paused_reactor(assoc), fast_responses(assoc):
            for n, s in enumerate(staged):
                if not assoc.is_established:
                    outcomes += [Outcome(r.item.id, False, reason="association ended before this instance was sent") for r in staged[n:]]
                    break
                outcomes.append(self._store_one(assoc, accepted, s, n % 65535 + 1))  # Message ID is a US
        return outcomes

    def _store_one(self, assoc, accepted: dict, s: _Staged, msg_id: int) -> Outcome:
        item = s.item
        target = next((ts for ts in [s.transfer_syntax, *FALLBACK] if (s.sop_class, ts) in accepted), None)
        if target is None or (target != s.transfer_syntax and s.transfer_syntax not in UNCOMPRESSED):
            return Outcome(item.id, False, reason="the peer accepted no transfer syntax this instance can be sent in")
        try:
            data = encoded_dataset(item.source_path, s.transfer_syntax, target)
        except Exception as exc:
            return Outcome(item.id, False, reason=f"staged copy could not be encoded for the peer: {type(exc).__name__}")
        try:
            status = c_store(assoc, accepted[(s.sop_class, target)], s.sop_class, s.sop_instance, data, msg_id)
        except Exception as exc:
            return Outcome(item.id, False, reason=f"C-STORE could not be sent: {type(exc).__name__}")
        if status is None:
            return Outcome(item.id, False, reason="no C-STORE response (association aborted or timed out)")
        if status in CONFIRMING or status == DUPLICATE:
            # What the peer holds is what was sent: the data set bytes in the accepted syntax.
            return Outcome(item.id, True, status_code=status, location=self.location,
                           content_sha256=hashlib.sha256(data).hexdigest())
        return Outcome(item.id, False, status_code=status, reason=f"C-STORE failed with status 0x{status:04X}")

    def verify(self, study_uid: str, sop_uids: set[str]) -> set[str]:
        """Query-back (C-FIND, IMAGE level, Study Root): the SOP Instance UIDs the peer has."""
        from pydicom import Dataset
        from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind

        ae = AE(ae_title=self.dest.calling_ae_title)
        ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
        assoc, failure = associate(self.dest, ae, self.tls)
        if failure:
            raise DestinationUnreachable(f"query-back: {failure}")
        query = Dataset()
        query.QueryRetrieveLevel = "IMAGE"
        query.StudyInstanceUID = study_uid
        query.SeriesInstanceUID = ""
        query.SOPInstanceUID = ""
        found, final = set(), None
        try:
            for status, identifier in assoc.send_c_find(query, StudyRootQueryRetrieveInformationModelFind):
                final = getattr(status, "Status", None)
                if final in (0xFF00, 0xFF01) and identifier is not None:
                    found.add(str(identifier.get("SOPInstanceUID", "")))
        finally:
            if assoc.is_established:
                assoc.release()
        if final != 0x0000:
            # A refused or failed query says nothing about what the peer holds.
            raise DestinationUnreachable(f"query-back: C-FIND ended with status {final if final is None else f'0x{final:04X}'}")
        return found & sop_uids
