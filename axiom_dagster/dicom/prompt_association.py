"""Prompt pynetdicom associations: idle loops that wait on their events (measured hot spot).

pynetdicom 3.0.4 runs two polling loops per association: the DUL thread sleeps 1 ms whenever
it is idle and the association reactor sleeps 1 ms before every look at its DIMSE queue, so
every C-STORE waits on average ~1.5 ms for nothing (request in, handler, response out), and
each association wakes 2,000 times a second (profiled: the reactor threads' polling alone
was about a fifth of the listener's CPU). Here each loop's 1 ms sleep becomes a wait that
ends on its event: the DUL waits on its socket and on a wake-up fd written when a PDU is
queued for sending or the association is killed; the reactor waits until the DUL has a
message, a release or an abort for it (or the DUL ends). What nothing signals (pynetdicom's
timers: ARTIM, the network idle timeout) is still looked at every IDLE_WAIT. TLS sockets
keep the plain 1 ms sleep (select cannot see buffered TLS data).

Used by the realtime listeners (acceptors, set up before their threads start) and by the
DIMSE source (requestors, set up from EVT_CONN_OPEN in the running DUL thread). Tied to
pynetdicom 3.0.4 (pinned): its `time.sleep` calls in dul.py and association.py are the hook.
"""
from __future__ import annotations

import os
import select
import ssl
import threading
import time as _time
from types import SimpleNamespace

import pynetdicom.association
import pynetdicom.dul
from pynetdicom import evt


def _sleep(seconds: float) -> None:
    """pynetdicom's `time.sleep` in its DUL and association modules: threads of a prompt
    association wait on their event instead; every other thread sleeps as before."""
    wait = getattr(threading.current_thread(), "_axiom_idle_wait", None)
    if wait is None:
        _time.sleep(seconds)
    else:
        wait(seconds)


# A stand-in for the `time` module inside pynetdicom.dul and pynetdicom.association: the same
# functions, only `sleep` is ours (see _sleep). Installed once, by install().
IDLE_WAIT = 0.05  # seconds: how late a timer expiry may be noticed (timeouts are tens of seconds)
_TIME = SimpleNamespace(**{name: getattr(_time, name) for name in dir(_time) if not name.startswith("__")})
_TIME.sleep = _sleep
_installed = False


def install() -> None:
    global _installed
    if not _installed:
        pynetdicom.dul.time = _TIME
        pynetdicom.association.time = _TIME
        _installed = True


class _Wakeup:
    """An eventfd the DUL thread can select on together with its socket."""

    def __init__(self):
        self.fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self.closed = False

    def set(self) -> None:
        if not self.closed:
            try:
                os.eventfd_write(self.fd, 1)
            except OSError:
                pass

    def drain(self) -> None:
        if self.closed:
            return
        try:
            os.eventfd_read(self.fd)
        except (BlockingIOError, OSError):
            pass

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            os.close(self.fd)


class _Checkpoint(threading.Event):
    """The association's reactor checkpoint: whoever clears it (pynetdicom's send_c_get,
    send_c_find, ..., to pause the reactor) wakes the reactor so it pauses at once."""

    def __init__(self, on_clear):
        super().__init__()
        self.on_clear = on_clear

    def clear(self) -> None:
        super().clear()
        self.on_clear()


def make_prompt(assoc) -> None:
    """Give an Association event-driven idle waits: an acceptor before it is started, or a
    requestor from its EVT_CONN_OPEN handler (its DUL thread already running)."""
    install()
    dul = assoc.dul
    wake = _Wakeup()
    has_work = threading.Event()  # DUL -> reactor: a DIMSE message or A-RELEASE/A-ABORT waits
    msg_queue = assoc.dimse.msg_queue
    to_user = dul.to_user_queue
    to_provider = dul.to_provider_queue
    send_pdu = dul.send_pdu

    def send_and_wake(primitive) -> None:
        send_pdu(primitive)
        wake.set()

    def dul_wait(seconds: float) -> None:
        if msg_queue.qsize() or to_user.qsize():
            has_work.set()
        if to_provider.qsize() or dul._kill_thread:
            return
        sock = dul.socket.socket if dul.socket is not None else None
        if sock is None or isinstance(sock, ssl.SSLSocket) or wake.closed:
            _time.sleep(seconds)
            return
        try:
            ready, _, _ = select.select([sock, wake.fd], [], [], IDLE_WAIT)
        except (OSError, ValueError):  # socket closed meanwhile: the loop finds out itself
            return
        if wake.fd in ready:
            wake.drain()

    def reactor_wait(seconds: float) -> None:
        if not has_work.wait(IDLE_WAIT):
            return
        has_work.clear()

    def wake_both() -> None:
        has_work.set()
        wake.set()

    def kill_and_wake() -> None:  # Association.kill from another thread: both loops see it now
        wake_both()
        kill()

    def stop_and_wake() -> bool:  # DULServiceProvider.stop_dul: the loop ends now, not after its wait
        stopped = stop_dul()
        if stopped:
            wake.set()
        return stopped

    def kill_dul_and_wake() -> None:
        kill_dul()
        wake.set()

    def run_dul() -> None:
        try:
            dul_run()
        finally:
            has_work.set()
            wake.close()

    def on_close(_event) -> None:
        has_work.set()
        wake.close()

    if dul.ident is None:  # not started: end with the thread
        dul_run = dul._target
        dul._target = run_dul
    else:  # running: end with the connection
        assoc.bind(evt.EVT_CONN_CLOSE, on_close)
    kill, stop_dul, kill_dul = assoc.kill, dul.stop_dul, dul.kill_dul
    dul.send_pdu = send_and_wake
    dul.stop_dul = stop_and_wake
    dul.kill_dul = kill_dul_and_wake
    assoc.kill = kill_and_wake
    # Set up before the reactor loop runs (before start, or at connection open): its
    # checkpoint is replaced while nobody waits on it.
    checkpoint = _Checkpoint(has_work.set)
    if assoc._reactor_checkpoint.is_set():
        checkpoint.set()
    assoc._reactor_checkpoint = checkpoint
    dul._axiom_idle_wait = dul_wait
    assoc._axiom_idle_wait = reactor_wait


