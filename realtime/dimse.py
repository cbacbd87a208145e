"""C-STORE / C-ECHO SCP listeners (pynetdicom), one ApplicationEntity per configured listener.

Each instance is landed durably (spool file, rename, synced, ledger row: ingest/group_commit.py) with
the File Meta Information written by us and the data set bytes exactly as received; only
then is Success (0x0000) returned. Failures return a C-STORE failure status and leave no
file behind (LandingZone.land removes its temp file on error).
"""
from __future__ import annotations

import errno
import functools
import logging
import shutil
import socket
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from pynetdicom import AE, evt
from pynetdicom.sop_class import Verification
from sqlalchemy.exc import SQLAlchemyError

from axiom_dagster.ingest.arrival import ArrivalMeta
from axiom_dagster.ingest.landing import LandingZone
from axiom_dagster.config.listeners import DicomListener
from axiom_dagster.dicom.uids import InvalidUID

from axiom_dagster.ingest.part10 import check_and_hash, check_file_and_hash
from axiom_dagster.ingest.rawheader import Unreadable, dataset_uids, instance_ids, part10_ids

from .dimse_network import TRANSFER_SYNTAXES, NoDelayAssociationServer, build_ssl_context, ip_allowed
from .handoff import HandedOverAssociationServer
from .logs import correlation_id
from .metrics import Metrics
from .spool import SpoolWriter, dimse_spool
from .sopclasses import storage_sop_classes

log = logging.getLogger("axiom.realtime.dimse")

STATUS_SUCCESS = 0x0000
STATUS_OUT_OF_RESOURCES = 0xA700
STATUS_DATASET_MISMATCH = 0xA900
STATUS_CANNOT_UNDERSTAND = 0xC000


class _AssocState:
    __slots__ = ("id", "calling_ae", "called_ae", "ip", "instances", "bytes", "opened", "failures")

    def __init__(self, calling_ae: str, called_ae: str, ip: str):
        self.id = uuid.uuid4().hex
        self.calling_ae, self.called_ae, self.ip = calling_ae, called_ae, ip
        self.instances = 0
        self.bytes = 0
        self.failures = 0
        self.opened = False


class DicomListenerService:
    """One configured listener: its AE, its server thread, its handlers."""

    def __init__(self, listener: DicomListener, zone: LandingZone, metrics: Metrics,
                 resolve: Callable[[Path], Path] = lambda p: Path(p), channel: socket.socket | None = None):
        """`channel`: in a listener worker (realtime/workers.py), the connections come from the
        supervisor over this channel (realtime/handoff.py) instead of a listening socket."""
        self.listener = listener
        self.channel = channel
        self.zone = zone
        self.store = zone.store
        self.metrics = metrics
        self.networks = listener.networks()
        self.allowed_aes = set(listener.allowed_calling_aes)
        where = f"listener {listener.name!r}: field tls"
        self.ssl_context = build_ssl_context(listener.tls, resolve, where) if listener.tls else None
        self.server: NoDelayAssociationServer | None = None
        self._thread: threading.Thread | None = None
        self._stop_lock = threading.Lock()
        self.spool: Path | None = None  # set by start()

        ae = AE(ae_title=listener.ae_title)
        ae.maximum_pdu_size = listener.max_pdu_size
        ae.maximum_associations = listener.max_associations
        ae.network_timeout = listener.network_timeout_seconds
        ae.require_called_aet = listener.require_called_ae
        for sop_class in storage_sop_classes(listener.extra_sop_classes):
            ae.add_supported_context(sop_class, TRANSFER_SYNTAXES)
        ae.add_supported_context(Verification, TRANSFER_SYNTAXES[:3])
        self.ae = ae

    # ---- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        handlers = [
            (evt.EVT_REQUESTED, self._on_requested),
            (evt.EVT_ESTABLISHED, self._on_established),
            (evt.EVT_CONN_CLOSE, self._on_conn_close),
        ]
        address = (self.listener.bind_address, self.listener.port)
        server_class = (NoDelayAssociationServer if self.channel is None
                        else functools.partial(HandedOverAssociationServer, channel=self.channel))
        self.server = self.ae.make_server(
            address, ae_title=self.listener.ae_title, ssl_context=self.ssl_context,
            evt_handlers=handlers, server_class=server_class,
        )
        # C-STORE and C-ECHO requests are read by dicom/store_receiver.py, which hands each
        # data set to `begin` (dimse_network.PromptRequestHandler installs it per association).
        self.spool = dimse_spool(self.zone.root)  # on the landing zone's filesystem: landing is a rename
        self.server.store_handler = self
        self.ae._servers.append(self.server)
        self._thread = threading.Thread(target=self.server.serve_forever, name=f"dicom-{self.listener.name}", daemon=True)
        self._thread.start()
        log.info("DICOM listener started", extra={
            "listener": self.listener.name, "ae_title": self.listener.ae_title,
            "bind": self.listener.bind_address, "port": self.port, "tls": bool(self.ssl_context)})

    @property
    def port(self) -> int:
        return self.server.server_address[1] if self.server else self.listener.port

    def stop_accepting(self) -> None:
        """Close the listening socket; associations in progress continue. Idempotent."""
        with self._stop_lock:
            server, self.server = self.server, None
        if server is not None:
            server.shutdown()

    def active_associations(self) -> int:
        return len([a for a in self.ae.active_associations if a.is_acceptor])

    def wait_idle(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.active_associations() == 0:
                return True
            time.sleep(0.05)
        return self.active_associations() == 0

    def abort_all(self) -> None:
        for assoc in list(self.ae.active_associations):
            assoc.abort()

    # ---- handlers -----------------------------------------------------------------------

    def _on_requested(self, event) -> None:
        assoc = event.assoc
        calling = assoc.requestor.primitive.calling_ae_title.strip()
        called = assoc.requestor.primitive.called_ae_title.strip()
        ip = assoc.requestor.address
        state = _AssocState(calling, called, ip)
        assoc._axiom = state
        correlation_id.set(state.id)
        reason = None
        if self.allowed_aes and calling not in self.allowed_aes:
            reason, diag = "calling AE title not allowed", 0x03
        elif self.networks and not ip_allowed(ip, self.networks):
            reason, diag = "source address not allowed", 0x01
        if reason:
            log.warning("association rejected", extra={
                "listener": self.listener.name, "calling_ae": calling, "called_ae": called,
                "peer_ip": ip, "reason": reason})
            self.metrics.associations.inc(listener=self.listener.name, outcome="rejected")
            assoc.acse.send_reject(0x01, 0x01, diag)
            evt.trigger(assoc, evt.EVT_REJECTED, {})
            assoc.kill()

    def _on_established(self, event) -> None:
        state: _AssocState = event.assoc._axiom
        correlation_id.set(state.id)
        self.store.open_association(state.id, self.listener.name, state.calling_ae, state.called_ae, state.ip)
        state.opened = True
        self.metrics.associations_open.inc(listener=self.listener.name)
        self.metrics.associations.inc(listener=self.listener.name, outcome="accepted")
        log.info("association established", extra={
            "listener": self.listener.name, "calling_ae": state.calling_ae,
            "called_ae": state.called_ae, "peer_ip": state.ip})

    def _on_conn_close(self, event) -> None:
        state: _AssocState | None = getattr(event.assoc, "_axiom", None)
        if state is None or not state.opened:
            return
        state.opened = False
        try:
            self.store.close_association(state.id, state.instances)
        except SQLAlchemyError:
            log.exception("could not record association end", extra={"listener": self.listener.name})
        self.metrics.associations_open.dec(listener=self.listener.name)
        log.info("association closed", extra={
            "correlation_id": state.id, "listener": self.listener.name, "instances": state.instances, "bytes": state.bytes,
            "failures": state.failures, "calling_ae": state.calling_ae})

    def begin(self, assoc, sop_class: str, sop_instance: str, transfer_syntax: str) -> SpoolWriter:
        """A C-STORE-RQ arrived (dicom/store_receiver.py): its data set goes to a spool file."""
        return SpoolWriter(self, assoc._axiom, sop_class, sop_instance, transfer_syntax)

    def land_spooled(self, state: _AssocState, spool: Path, sop_class: str, sop_instance: str,
                     ts: str, data: bytes | None = None, synced: bool = False) -> tuple[int, str]:
        """The data set is on disk behind our File Meta Information (the request's UIDs and
        the accepted transfer syntax): checked, then moved into place. `data`: the same data
        set still in memory (a small instance), checked there instead of read back. The
        DIMSE status and Error Comment to answer."""
        name = self.listener.name
        started = time.perf_counter()
        try:
            if data is None:
                ids, offset = part10_ids(spool)
            else:
                ids, offset = instance_ids(dataset_uids(data, ts), ts), None
        except (Unreadable, InvalidUID) as exc:
            return self._refuse(state, spool, None, str(exc), STATUS_CANNOT_UNDERSTAND,
                                "unreadable" if isinstance(exc, Unreadable) else "invalid_uid")
        if ids.sop_uid != sop_instance or (ids.sop_class_uid and ids.sop_class_uid != sop_class):
            return self._refuse(state, spool, ids, "SOP Class/Instance UID in the data set differ from the request",
                                STATUS_DATASET_MISMATCH, "dataset_mismatch")
        sha, problem = check_file_and_hash(spool, offset, ts) if data is None else check_and_hash(data, 0, ts)
        if problem:
            return self._refuse(state, spool, ids, f"data set does not parse to its end: {problem}")
        size = spool.stat().st_size
        meta = ArrivalMeta(source=name, calling_ae=state.calling_ae, called_ae=state.called_ae,
                           source_ip=state.ip, association_id=state.id,
                           received_at=datetime.now(timezone.utc))
        try:
            ledger_id = self.zone.land_file(ids, spool, meta, sha256=sha, synced=synced)
        except OSError as exc:
            reason = "disk_full" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else "io_error"
            return self._fail(state, STATUS_OUT_OF_RESOURCES, reason, f"{reason}: {exc.strerror}")
        except SQLAlchemyError as exc:
            return self._fail(state, STATUS_OUT_OF_RESOURCES, "state_store", f"ledger unavailable: {type(exc).__name__}")
        state.instances += 1
        state.bytes += size
        elapsed = time.perf_counter() - started
        self.metrics.instances.inc(listener=name)
        self.metrics.bytes.inc(size, listener=name)
        self.metrics.landing_seconds.observe(elapsed, listener=name)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("instance landed", extra={"ledger_id": ledger_id, "sop_uid": ids.sop_uid, "bytes": size})
        return STATUS_SUCCESS, ""

    def _refuse(self, state: _AssocState, spool: Path, ids, comment: str, status: int = STATUS_CANNOT_UNDERSTAND,
                reason: str = "incomplete") -> tuple[int, str]:
        """A data set refused (cut short, unreadable, invalid UIDs, not what the request says):
        not acknowledged, and kept in quarantine/landing as received (the receiver's File Meta
        Information, naming the request's SOP Class and Instance, and the data set as sent)."""
        def copy(fh) -> None:
            with open(spool, "rb") as src:
                shutil.copyfileobj(src, fh, 1 << 20)

        try:
            self.zone.quarantine_refused(copy, comment, source=self.listener.name, ids=ids)
        except Exception:  # the refusal itself must still be answered
            log.exception("could not quarantine a refused instance", extra={"listener": self.listener.name})
        return self._fail(state, status, reason, comment)

    def _fail(self, state: _AssocState, status: int, reason: str, comment: str) -> tuple[int, str]:
        state.failures += 1
        self.metrics.failures.inc(listener=self.listener.name, reason=reason)
        log.warning("instance refused", extra={"correlation_id": state.id, "listener": self.listener.name, "status": f"0x{status:04X}",
                                               "reason": reason, "detail": comment[:200]})
        return status, comment[:64]
