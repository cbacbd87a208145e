"""`axiom realtime --workers N`: the supervisor accepts each DICOM connection and hands it to
the listener worker with the fewest open associations.

Why not SO_REUSEPORT on the DICOM ports: the kernel then picks a worker by a hash of the
peers' addresses, blind to load. Four associations over two workers split 2/2 in only 123 of
300 trials here (1/3 in 145, 0/4 in 32), leaving one worker with most of the load. A
blocking accept() on one shared socket did little better (2/2 in 153 of 300) when the
connections arrive together.

So the supervisor holds the listening sockets (Dispatcher), and each worker has one Unix
SOCK_SEQPACKET channel per listener: a connection travels as SCM_RIGHTS with the peer's
address, and the worker sends one byte back when an association's connection closes, which
keeps the supervisor's count of open associations per worker. Connections still in the
accept queue belong to no worker, so a worker killed with SIGKILL takes only its own open
associations with it. The HTTP port keeps SO_REUSEPORT (`listening_socket`, in each worker):
many short requests spread well by hash.
"""
from __future__ import annotations

import json
import logging
import socket
import threading
import time

from pynetdicom import evt

from axiom_dagster.config.listeners import DicomListener

from .dimse_network import NoDelayAssociationServer

log = logging.getLogger("axiom.realtime.handoff")

_CLOSED = b"c"  # worker -> supervisor: one association's connection closed


def listening_socket(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    return sock


class Dispatcher:
    """In the supervisor: one listening socket per DICOM listener, one accept thread each,
    and the open-association count of every live worker."""

    def __init__(self, listeners: list[DicomListener]):
        self.names = [lc.name for lc in listeners]
        self._sockets = [listening_socket(lc.bind_address, lc.port) for lc in listeners]
        self._channels: list[dict[int, socket.socket]] = [{} for _ in listeners]
        self._open: dict[int, int] = {}
        self._lock = threading.Lock()
        self.handed_over = 0

    @property
    def ports(self) -> list[int]:
        return [s.getsockname()[1] for s in self._sockets]

    def open_associations(self) -> dict[int, int]:
        with self._lock:
            return dict(self._open)

    def attach(self, worker: int) -> list[socket.socket]:
        """New channels for worker number `worker`, one per listener, in listener order:
        the ends to pass to the worker process (the caller closes its copies)."""
        ends = []
        with self._lock:
            self._open[worker] = 0
            for index, channels in enumerate(self._channels):
                ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
                channels[worker] = ours
                threading.Thread(target=self._count_closes, args=(index, worker, ours), daemon=True,
                                 name=f"handoff-{self.names[index]}-{worker}").start()
                ends.append(theirs)
        return ends

    def start(self) -> None:
        for index, sock in enumerate(self._sockets):
            threading.Thread(target=self._accept_loop, args=(index, sock), daemon=True,
                             name=f"accept-{self.names[index]}").start()

    def stop_accepting(self) -> None:
        for sock in self._sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)  # wakes the accept thread
            except OSError:
                pass
            sock.close()

    def close(self) -> None:
        self.stop_accepting()
        with self._lock:
            for channels in self._channels:
                for channel in channels.values():
                    channel.close()
                channels.clear()

    def _accept_loop(self, index: int, sock: socket.socket) -> None:
        while True:
            try:
                conn, address = sock.accept()
            except OSError:
                return  # closed: the supervisor is stopping
            with conn:
                self._hand_over(index, conn, address)

    def _hand_over(self, index: int, conn: socket.socket, address) -> None:
        payload = json.dumps([address[0], address[1]]).encode()
        with self._lock:
            channels = self._channels[index]
            # Least loaded first; a worker whose channel is full (not reading) is skipped.
            for worker in sorted(channels, key=lambda w: (self._open.get(w, 0), w)):
                try:
                    socket.send_fds(channels[worker], [payload], [conn.fileno()], socket.MSG_DONTWAIT)
                except BlockingIOError:
                    continue
                except OSError:  # the worker died a moment ago
                    channels.pop(worker).close()
                    continue
                self._open[worker] = self._open.get(worker, 0) + 1
                self.handed_over += 1
                return
        log.warning("no listener worker alive and reading: connection closed", extra={"listener": self.names[index]})

    def _count_closes(self, index: int, worker: int, channel: socket.socket) -> None:
        while True:
            try:
                data = channel.recv(16)
            except OSError:
                data = b""
            with self._lock:
                if not data:  # the worker exited (or closed its listener): hand it nothing more
                    if self._channels[index].get(worker) is channel:
                        del self._channels[index][worker]
                    return
                if worker in self._open and self._channels[index].get(worker) is channel:
                    self._open[worker] = max(0, self._open[worker] - 1)


class HandedOverAssociationServer(NoDelayAssociationServer):
    """In a worker: pynetdicom's server fed by the supervisor's channel instead of a
    listening socket. socketserver's loop waits on the channel; each message is one
    connection, accepted here as if from accept()."""

    def __init__(self, *args, channel: socket.socket, **kwargs):
        self.channel = channel
        super().__init__(*args, **kwargs)
        self.bind(evt.EVT_CONN_CLOSE, self._connection_closed)

    def server_bind(self) -> None:
        self.socket.close()
        self.socket = self.channel  # the loop's select() and server_close() act on the channel

    def server_activate(self) -> None:
        pass

    def accept_connection(self):
        message, fds, _flags, _address = socket.recv_fds(self.channel, 256, 1)
        if not fds:
            # End of file: the supervisor closed the channel (it is stopping this worker, or it
            # is gone and realtime/workers.py stops the orphan). Don't spin until then.
            time.sleep(0.1)
            raise OSError("the supervisor closed this worker's channel")
        host, port = json.loads(message)
        return socket.socket(fileno=fds[0]), (host, port)

    def get_request(self):
        try:
            return super().get_request()
        except OSError:
            self._connection_closed(None)  # e.g. a failed TLS handshake: no association follows
            raise

    def _connection_closed(self, _event) -> None:
        try:
            self.channel.send(_CLOSED)
        except OSError:
            pass
