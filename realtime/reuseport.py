"""Several processes serving one port: SO_REUSEPORT on the DICOM and HTTP listening sockets.

Linux spreads new connections over every socket bound to the port with SO_REUSEPORT, so each
listener worker process (realtime/workers.py) accepts its own share of associations and
requests; a worker that dies takes only its own connections with it.
"""
from __future__ import annotations

import socket

from .dimse import DicomListenerService, NoDelayAssociationServer


class ReusePortAssociationServer(NoDelayAssociationServer):
    def server_bind(self) -> None:
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        super().server_bind()


class ReusePortListenerService(DicomListenerService):
    server_class = ReusePortAssociationServer


def reuseport_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket that other processes may bind too (handed to uvicorn)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock
