"""DIMSE source (pynetdicom): study-level C-FIND with filters; retrieval by C-GET (storage
sub-operations on our association, SCP role negotiated per storage class) or by C-MOVE to a
C-STORE listener of ours started with the source. Every DIMSE status is recorded with the
study; sockets get TCP_NODELAY (pynetdicom leaves Nagle on: ~40 ms stall per message).
"""
from __future__ import annotations

import socket
import ssl
import threading
from datetime import date

from pydicom import Dataset
from pynetdicom import AE, build_context, build_role, evt
from pynetdicom.presentation import AllStoragePresentationContexts, StoragePresentationContexts
from pynetdicom.sop_class import (
    StudyRootQueryRetrieveInformationModelFind as FIND,
    StudyRootQueryRetrieveInformationModelGet as GET,
    StudyRootQueryRetrieveInformationModelMove as MOVE,
    Verification,
)

from axiom_dagster.config.sources import DimseSource
from axiom_dagster.dicom.dimse_commands import C_GET_RSP
from axiom_dagster.dicom.prompt_association import make_prompt
from axiom_dagster.dicom.store_receiver import receive_stores
from axiom_dagster.dicom.uids import is_valid_uid
from axiom_dagster.sources.sink import NotLandable, dataset_ids
from axiom_dagster.sources.base import Page, SourceError, StudyOutcome, StudyRef, as_int, dicom_date_range, valid_study_uid

# Uncompressed first, then the compressed syntaxes a PACS may hold; stored as sent.
TRANSFER_SYNTAXES = [
    "1.2.840.10008.1.2.1", "1.2.840.10008.1.2", "1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.2",
    "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70",
    "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81", "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91",
    "1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.202", "1.2.840.10008.1.2.4.203", "1.2.840.10008.1.2.5",
]
MAX_CONTEXTS = 128  # an association request may carry at most 128 presentation contexts
STATUS_SUCCESS, STATUS_OUT_OF_RESOURCES, STATUS_UNEXPECTED = 0x0000, 0xA700, 0xC001
# Study-level filters spelled as series attributes map to the study-level key.
_STUDY_KEYS = {"Modality": "ModalitiesInStudy"}


def _nodelay(event) -> None:
    """TCP_NODELAY, and idle loops that wait on the socket rather than sleeping 1 ms several
    times per C-STORE sub-operation (dicom/prompt_association.py)."""
    event.assoc.dul.socket.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    make_prompt(event.assoc)


def _status_text(status: Dataset | None) -> str:
    if status is None or "Status" not in status:
        return "no response (association aborted or timed out)"
    return f"0x{status.Status:04X}"


class DimseStudySource:
    pages = False  # C-FIND has no offset: a query's answer comes whole (or capped by the PACS)

    def __init__(self, config: DimseSource, resolve=lambda p: p):
        self.config = config
        self.name = config.name
        self._tls = self._tls_context(resolve) if config.tls else None
        self._listener = None
        self._sinks: dict[str, object] = {}
        self._sinks_lock = threading.Lock()

    # ---- association --------------------------------------------------------------------

    def _tls_context(self, resolve) -> ssl.SSLContext:
        tls = self.config.tls
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(resolve(tls.ca)) if tls.ca else None)
        ctx.load_cert_chain(str(resolve(tls.cert)), str(resolve(tls.key)))
        return ctx

    def _associate(self, contexts, roles=()):
        ae = AE(ae_title=self.config.ae_title)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = self.config.timeout_seconds
        for cx in contexts:
            ae.add_requested_context(cx.abstract_syntax, cx.transfer_syntax)
        tls = (self._tls, self.config.host) if self._tls else None
        assoc = ae.associate(
            self.config.host, self.config.port, ae_title=self.config.remote_ae, ext_neg=list(roles) or None,
            tls_args=tls, evt_handlers=[(evt.EVT_CONN_OPEN, _nodelay)], max_pdu=0,
        )
        if not assoc.is_established:
            state = "rejected" if assoc.is_rejected else "aborted" if assoc.is_aborted else "failed"
            raise SourceError(f"association with {self.config.remote_ae} at {self.config.host}:{self.config.port} {state}")
        return assoc

    def echo(self) -> str:
        assoc = self._associate([build_context(Verification)])
        try:
            status = assoc.send_c_echo()
        finally:
            assoc.release()
        if status is None or status.Status != STATUS_SUCCESS:
            raise SourceError(f"C-ECHO status {_status_text(status)}")
        return "C-ECHO ok"

    # ---- C-FIND -------------------------------------------------------------------------

    def find_studies(self, first: date, last: date, *, offset: int = 0, limit: int | None = None,
                     extra: dict[str, str] | None = None) -> Page:
        """Study-level C-FIND. DIMSE has no paging: results past offset+limit are cancelled
        (C-CANCEL) and offset is applied here."""
        query = Dataset()
        query.QueryRetrieveLevel = "STUDY"
        for keyword in ("StudyInstanceUID", "NumberOfStudyRelatedInstances", "SOPClassesInStudy", "ModalitiesInStudy"):
            setattr(query, keyword, "")
        for keyword, value in {**self.config.filters, **(extra or {})}.items():
            setattr(query, _STUDY_KEYS.get(keyword, keyword), value)
        query.StudyDate = dicom_date_range(first, last)
        wanted = None if limit is None else offset + limit
        studies: list[StudyRef] = []
        more = False
        assoc = self._associate([build_context(FIND)])
        try:
            for status, identifier in assoc.send_c_find(query, FIND):
                code = None if status is None else status.get("Status")
                if code in (0xFF00, 0xFF01):
                    ref = _study_ref(identifier)
                    if ref:
                        studies.append(ref)
                    if wanted is not None and len(studies) >= wanted and not more:
                        more = True
                        assoc.send_c_cancel(1, query_model=FIND)
                elif code not in (STATUS_SUCCESS, 0xFE00):  # 0xFE00: our cancel was honoured
                    raise SourceError(f"C-FIND on source {self.name}: status {_status_text(status)}")
        finally:
            if assoc.is_established:
                assoc.release()
        return Page(studies[offset:wanted], more=more)

    # ---- retrieval ----------------------------------------------------------------------

    def retrieve_study(self, study: StudyRef, sink) -> StudyOutcome:
        query = Dataset()
        query.QueryRetrieveLevel = "STUDY"
        query.StudyInstanceUID = study.study_uid
        try:
            if self.config.retrieve == "get":
                final = self._c_get(query, study, sink)
            else:
                final = self._c_move(query, study, sink)
        except SourceError as exc:
            sink.outcome.error = str(exc)
            return sink.outcome
        code = _status_text(final)
        sink.outcome.statuses[code] = sink.outcome.statuses.get(code, 0) + 1
        failed = as_int(final.get("NumberOfFailedSuboperations")) if final is not None else None
        if code != "0x0000":
            op = "C-GET" if self.config.retrieve == "get" else "C-MOVE"
            sink.outcome.error = f"{op} final status {code}" + (f", {failed} failed sub-operations" if failed else "")
            sink.outcome.failed += failed or 0
        return sink.outcome

    def _storage_contexts(self, study: StudyRef):
        """One context per SOP class in the study when the PACS reported them (C-FIND
        SOPClassesInStudy), else the 120 most common storage classes."""
        if study.sop_classes:
            return [build_context(uid, TRANSFER_SYNTAXES) for uid in study.sop_classes[: MAX_CONTEXTS - 1]]
        return [build_context(cx.abstract_syntax, TRANSFER_SYNTAXES) for cx in StoragePresentationContexts]

    def _c_get(self, query: Dataset, study: StudyRef, sink) -> Dataset | None:
        storage = self._storage_contexts(study)
        roles = [build_role(cx.abstract_syntax, scp_role=True) for cx in storage]

        assoc = self._associate([build_context(GET), *storage], roles)
        # The C-STORE sub-operations are read and answered in the DUL thread, and so are the
        # pending C-GET-RSPs (counted, one a second passed on); the final C-GET-RSP is
        # pynetdicom's (dicom/store_receiver.py).
        receive_stores(assoc, _SinkStores(sink), quiet_pending=frozenset({C_GET_RSP}))
        try:
            return _final(assoc.send_c_get(query, GET))
        finally:
            if assoc.is_established:
                assoc.release()

    def _c_move(self, query: Dataset, study: StudyRef, sink) -> Dataset | None:
        self._ensure_listener()
        with self._sinks_lock:
            self._sinks[study.study_uid] = sink
        try:
            assoc = self._associate([build_context(MOVE)])
            try:
                return _final(assoc.send_c_move(query, self.config.move_destination.ae_title, MOVE))
            finally:
                if assoc.is_established:
                    assoc.release()
        finally:
            with self._sinks_lock:
                self._sinks.pop(study.study_uid, None)

    def _ensure_listener(self) -> None:
        """Our C-MOVE destination: a storage SCP routing each instance to the sink of the
        study being moved (several moves may run at once)."""
        with self._sinks_lock:  # concurrent retrievals start it once
            if self._listener is None:
                self._listener = self._start_listener()

    def _start_listener(self):
        dest = self.config.move_destination
        ae = AE(ae_title=dest.ae_title)
        ae.network_timeout = self.config.timeout_seconds
        for cx in AllStoragePresentationContexts:
            ae.add_supported_context(cx.abstract_syntax, TRANSFER_SYNTAXES)

        def on_store(event):
            buf = event.request.DataSet.getbuffer()
            try:
                ts = str(event.context.transfer_syntax)
                try:
                    ids = dataset_ids(buf, ts)
                except NotLandable:
                    return STATUS_UNEXPECTED
                with self._sinks_lock:
                    sink = self._sinks.get(ids.study_uid)
                return STATUS_UNEXPECTED if sink is None else _land(sink, buf, ts, str(event.request.AffectedSOPClassUID), ids)
            finally:
                buf.release()

        try:
            return ae.start_server(
                (dest.bind_address, dest.port), block=False,
                evt_handlers=[(evt.EVT_CONN_OPEN, _nodelay), (evt.EVT_C_STORE, on_store)],
            )
        except OSError as exc:
            raise SourceError(f"cannot listen for C-MOVE on {dest.bind_address}:{dest.port}: {exc.strerror}") from None

    def close(self) -> None:
        if self._listener is not None:
            self._listener.shutdown()
            self._listener = None


class _SinkStores:
    """C-STORE sub-operations of a C-GET into the study's sink: each data set gathered in
    memory as its fragments arrive (the sink lands whole instances)."""

    def __init__(self, sink):
        self.sink = sink

    def begin(self, assoc, sop_class: str, sop_instance: str, transfer_syntax: str) -> "_Gathered":
        return _Gathered(self.sink, sop_class, transfer_syntax)


class _Gathered:
    def __init__(self, sink, sop_class: str, transfer_syntax: str):
        self.sink, self.sop_class, self.transfer_syntax = sink, sop_class, transfer_syntax
        self.parts: list[bytes] = []

    def write(self, data: memoryview) -> None:
        self.parts.append(bytes(data))

    def finish(self) -> tuple[int, str]:
        data = self.parts[0] if len(self.parts) == 1 else b"".join(self.parts)
        self.parts = []
        status = _land(self.sink, data, self.transfer_syntax, self.sop_class)
        return status, "" if status == STATUS_SUCCESS else "not stored"

    def discard(self) -> None:
        self.parts = []


def _land(sink, data, transfer_syntax: str, sop_class: str, ids=None) -> int:
    """The encoded data set as received (no decode, no re-encode; we write the File Meta)."""
    try:
        sink.add_dataset(data, transfer_syntax, ids, sop_class=sop_class)
        return STATUS_SUCCESS
    except Exception as exc:  # disk full, store down: the sender sees a failure status
        sink.outcome.error = sink.outcome.error or f"landing failed: {type(exc).__name__}"
        return STATUS_OUT_OF_RESOURCES


def _final(responses) -> Dataset | None:
    """The last (final) status of a C-GET/C-MOVE response stream."""
    final = None
    for status, _identifier in responses:
        if status is None or status.get("Status") not in (0xFF00,):
            final = status
    return final


def _study_ref(identifier: Dataset | None) -> StudyRef | None:
    if identifier is None:
        return None
    uid = valid_study_uid(identifier.get("StudyInstanceUID"))
    if not uid:
        return None
    raw = identifier.get("SOPClassesInStudy") or []
    classes = tuple(str(c) for c in ([raw] if isinstance(raw, str) else raw) if is_valid_uid(str(c)))
    return StudyRef(uid, str(identifier.get("StudyDate") or "") or None,
                    as_int(identifier.get("NumberOfStudyRelatedInstances")), classes)
