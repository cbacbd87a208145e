"""The network side of the C-STORE SCP listeners: the transfer syntaxes accepted, the TLS
context, an association server with TCP_NODELAY, and the calling IP allow-list check."""
from __future__ import annotations

import copy
import ipaddress
import logging
import socket
import ssl
from pathlib import Path
from typing import Callable

from pynetdicom import evt
from pynetdicom._handlers import (
    standard_dimse_recv_handler,
    standard_dimse_sent_handler,
    standard_pdu_recv_handler,
    standard_pdu_sent_handler,
)
from pynetdicom.transport import RequestHandler, ThreadedAssociationServer

from axiom_dagster.config.listeners import TLSConfig
from axiom_dagster.config.models import ConfigError

from axiom_dagster.dicom.prompt_association import make_prompt
from axiom_dagster.dicom.store_receiver import receive_stores

log = logging.getLogger("axiom.realtime.dimse")

# Uncompressed, deflated and the common compressed transfer syntaxes; received data sets are
# stored as sent, never transcoded.
TRANSFER_SYNTAXES = [
    "1.2.840.10008.1.2",  # Implicit VR Little Endian
    "1.2.840.10008.1.2.1",  # Explicit VR Little Endian
    "1.2.840.10008.1.2.1.99",  # Deflated Explicit VR Little Endian
    "1.2.840.10008.1.2.2",  # Explicit VR Big Endian (retired, still sent by old modalities)
    "1.2.840.10008.1.2.4.50",  # JPEG Baseline (Process 1)
    "1.2.840.10008.1.2.4.51",  # JPEG Extended (Process 2 & 4)
    "1.2.840.10008.1.2.4.57",  # JPEG Lossless (Process 14)
    "1.2.840.10008.1.2.4.70",  # JPEG Lossless SV1
    "1.2.840.10008.1.2.4.80",  # JPEG-LS Lossless
    "1.2.840.10008.1.2.4.81",  # JPEG-LS Near-Lossless
    "1.2.840.10008.1.2.4.90",  # JPEG 2000 Lossless
    "1.2.840.10008.1.2.4.91",  # JPEG 2000
    "1.2.840.10008.1.2.4.201",  # HTJ2K Lossless
    "1.2.840.10008.1.2.4.202",  # HTJ2K Lossless RPCL
    "1.2.840.10008.1.2.4.203",  # HTJ2K
    "1.2.840.10008.1.2.5",  # RLE Lossless
]


def build_ssl_context(tls: TLSConfig, resolve: Callable[[Path], Path], where: str = "tls") -> ssl.SSLContext:
    """The server TLS context; a missing or unusable file is a ConfigError naming the field
    (`where` is the listener's place in the configuration, e.g. "listeners[1] (name).tls")."""
    files = {name: resolve(getattr(tls, name)) for name in ("cert", "key", "ca") if getattr(tls, name) is not None}
    for name, path in files.items():
        if not path.is_file():
            raise ConfigError(f"{where}.{name}: file not found: {path}")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(certfile=str(files["cert"]), keyfile=str(files["key"]))
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(f"{where}.cert / {where}.key: cannot load the certificate and key "
                          f"({files['cert']}, {files['key']}): {exc.strerror or exc}") from None
    if "ca" in files:
        try:
            ctx.load_verify_locations(cafile=str(files["ca"]))
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(f"{where}.ca: cannot load CA certificates ({files['ca']}): {exc.strerror or exc}") from None
    ctx.verify_mode = ssl.CERT_REQUIRED if tls.require_client_cert else (
        ssl.CERT_OPTIONAL if tls.ca is not None else ssl.CERT_NONE)
    return ctx


_STANDARD_LOGGING = (
    (evt.EVT_DIMSE_RECV, standard_dimse_recv_handler),
    (evt.EVT_DIMSE_SENT, standard_dimse_sent_handler),
    (evt.EVT_PDU_RECV, standard_pdu_recv_handler),
    (evt.EVT_PDU_SENT, standard_pdu_sent_handler),
)


class PromptRequestHandler(RequestHandler):
    """Each accepted association: prompt idle loops (dicom/prompt_association.py), C-STORE
    and C-ECHO requests read by dicom/store_receiver.py into the server's `store_handler`,
    and no standard logging handlers (they log UIDs)."""

    def _create_association(self):
        assoc = super()._create_association()
        for event, handler in _STANDARD_LOGGING:
            assoc.unbind(event, handler)
        make_prompt(assoc)
        handler = getattr(self.server, "store_handler", None)
        if handler is not None:
            receive_stores(assoc, handler, answer_echo=True)
        return assoc


class ContextList(list):
    """The server's supported contexts; copied per association without deepcopy (the UIDs
    are immutable, each context and its transfer syntax list are new objects)."""

    def __deepcopy__(self, memo):
        out = []
        for cx in self:
            new = copy.copy(cx)
            new._transfer_syntax = list(cx._transfer_syntax)
            out.append(new)
        return out


class NoDelayAssociationServer(ThreadedAssociationServer):
    """pynetdicom's server with TCP_NODELAY on every accepted socket (pynetdicom 3.0.4 leaves
    Nagle on: each C-STORE response then waits ~40 ms for the peer's delayed ACK), and
    prompt associations (PromptRequestHandler)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.RequestHandlerClass = PromptRequestHandler
        self.contexts = ContextList(self.contexts)

    def _bind_defaults(self) -> None:
        """Only the intervention defaults: no standard logging handlers (they log UIDs and
        copy every received data set); the listener logs associations itself."""
        for event in evt._INTERVENTION_EVENTS:
            self.bind(event, evt.get_default_handler(event))

    def accept_connection(self):
        return self.socket.accept()

    def get_request(self):
        client_socket, address = self.accept_connection()
        client_socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.ssl_context:
            client_socket.settimeout(30)
            try:
                client_socket = self.ssl_context.wrap_socket(client_socket, server_side=True)
            except (ssl.SSLError, OSError) as exc:
                log.warning("TLS handshake failed", extra={"peer_ip": address[0], "error": str(exc)})
                client_socket.close()
                raise
            client_socket.settimeout(None)
        return client_socket, address


def ip_allowed(ip: str, networks) -> bool:
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
        addr = addr.ipv4_mapped
    return any(addr in net for net in networks)
