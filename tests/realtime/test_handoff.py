"""The supervisor's hand-over of DICOM connections (realtime/handoff.py), in one process: a
Dispatcher and two listener "workers" (DicomListenerService on its channels). Connections go
to the worker with the fewest open associations, every close is counted back (released,
rejected), and a worker whose channel closed gets nothing more."""
from __future__ import annotations

import socket
import time

import pytest
from pynetdicom import AE
from pynetdicom.sop_class import Verification

from axiom_dagster.ingest.landing import LandingZone
from axiom_dagster.store.state import StateStore
from realtime.dimse import DicomListenerService
from realtime.handoff import Dispatcher
from realtime.metrics import Metrics
from tests.realtime.support import make_config


def _wait(predicate, what: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


@pytest.fixture
def two_workers(tmp_path):
    _, config = make_config(tmp_path, listeners=[
        {"name": "main", "ae_title": "AXIOM", "port": 0, "allowed_calling_aes": ["SENDER"]}])
    store = StateStore(config.state_store_url)
    store.migrate()
    zone = LandingZone(config.landing_path, config.quarantine_path, store)
    dispatcher = Dispatcher(config.listeners)
    workers = []
    for index in range(2):
        [channel] = dispatcher.attach(index)
        worker = DicomListenerService(config.listeners[0], zone, Metrics(), config.resolve, channel=channel)
        worker.start()
        workers.append(worker)
    dispatcher.start()
    yield dispatcher, workers
    dispatcher.stop_accepting()
    for worker in workers:
        worker.abort_all()
        worker.stop_accepting()
    dispatcher.close()
    zone.close()
    store.dispose()


def _associate(port: int, calling: str = "SENDER"):
    ae = AE(ae_title=calling)
    ae.add_requested_context(Verification)
    return ae.associate("127.0.0.1", port, ae_title="AXIOM")


def test_connections_go_to_the_least_loaded_worker_and_closes_are_counted(two_workers):
    dispatcher, workers = two_workers
    port = dispatcher.ports[0]
    assocs = [_associate(port) for _ in range(4)]
    assert all(a.is_established for a in assocs)
    assert [w.active_associations() for w in workers] == [2, 2]
    assert dispatcher.open_associations() == {0: 2, 1: 2}
    # The listener serves on handed-over connections: C-ECHO answered.
    assert assocs[0].send_c_echo().Status == 0x0000

    for a in assocs[:3]:
        a.release()
    _wait(lambda: sum(dispatcher.open_associations().values()) == 1, "3 closes counted")
    # Worker 1 still serves assocs[3]: the next goes to worker 0, then a tie goes to worker 0.
    more = [_associate(port) for _ in range(2)]
    assert dispatcher.open_associations() == {0: 2, 1: 1}
    _wait(lambda: [w.active_associations() for w in workers] == [2, 1], "the released associations' threads to end")
    for a in more + assocs[3:]:
        a.release()
    _wait(lambda: dispatcher.open_associations() == {0: 0, 1: 0}, "all closes counted")


def test_a_rejected_association_is_counted_closed(two_workers):
    dispatcher, _workers = two_workers
    rejected = _associate(dispatcher.ports[0], calling="STRANGER")
    assert rejected.is_rejected
    _wait(lambda: dispatcher.open_associations() == {0: 0, 1: 0}, "the rejected connection's close")


def test_a_worker_whose_channel_closed_gets_no_more_connections(two_workers):
    dispatcher, workers = two_workers
    workers[0].stop_accepting()  # closes its channel, as a worker's exit does
    _wait(lambda: 0 not in _live(dispatcher), "the supervisor to notice")
    assocs = [_associate(dispatcher.ports[0]) for _ in range(3)]
    assert all(a.is_established for a in assocs)
    assert workers[1].active_associations() == 3
    for a in assocs:
        a.release()


def _live(dispatcher: Dispatcher) -> set[int]:
    return set(dispatcher._channels[0])


def test_a_connection_closed_without_an_association_is_counted_closed(two_workers):
    """A TCP probe (connect, close; e.g. a load balancer's health check) leaves no count behind."""
    dispatcher, _workers = two_workers
    for _ in range(3):
        socket.create_connection(("127.0.0.1", dispatcher.ports[0])).close()
    _wait(lambda: sum(dispatcher.open_associations().values()) == 0 and dispatcher.handed_over == 3,
          "the probes' closes")
