"""C-STORE over mutual TLS to DCMTK storescp (+tls, peer certificate required): our client
certificate is accepted and the files arrive; without it the failure is recorded."""
import os

import pytest

from axiom_dagster.destinations.delivery import deliver_destination
from axiom_dagster.store.deliveries import DeliveryState
from tests.destinations.support import FAST_RETRY, staged
from tests.helpers import free_port
from tests.peers.process import start_listener, stop_process
from tests.realtime.support import make_certs

STORESCP = "/usr/bin/storescp"
pytestmark = [pytest.mark.dcmtk, pytest.mark.skipif(not os.path.exists(STORESCP), reason="DCMTK is not installed")]


@pytest.fixture
def tls_scp(tmp_path):
    certs = make_certs(tmp_path / "certs")
    out = tmp_path / "received"
    out.mkdir()
    port = free_port()
    proc = start_listener(
        [STORESCP, "+tls", str(certs["server.key"]), str(certs["server.pem"]), "+cf", str(certs["ca.pem"]),
         "--require-peer-cert", "-aet", "SECURE", "-od", str(out), str(port)],
        port,
    )
    yield port, out, certs
    stop_process(proc)


def _run(tmp_path, port, tls):
    dest = {"name": "secure", "type": "dicom", "host": "127.0.0.1", "port": port, "ae_title": "SECURE",
            "retry": FAST_RETRY, "timeout_seconds": 10, "tls": tls}
    config, store = staged(tmp_path, [dest], studies=1, series=2, instances=2, real_world=False)
    return deliver_destination(config, store, "secure"), DeliveryState(store).rows("secure")


def test_mutual_tls_delivery(tmp_path, tls_scp):
    port, received, certs = tls_scp
    tls = {"ca_file": str(certs["ca.pem"]), "cert_file": str(certs["client.pem"]), "key_file": str(certs["client.key"]),
           "server_hostname": "localhost"}
    report, rows = _run(tmp_path, port, tls)
    assert report.confirmed == 4, report.summary()
    assert {r["status"] for r in rows} == {"confirmed"}
    assert len(list(received.iterdir())) == 4


def test_without_client_certificate_fails_with_reason(tmp_path, tls_scp):
    port, received, certs = tls_scp
    report, rows = _run(tmp_path, port, {"ca_file": str(certs["ca.pem"]), "server_hostname": "localhost"})
    assert (report.confirmed, report.failed) == (0, 4)
    assert {r["status"] for r in rows} == {"failed"}
    assert all(r["error"].endswith("TLS in use: the peer may have refused our client certificate") for r in rows)
    assert list(received.iterdir()) == []
