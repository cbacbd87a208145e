"""The audit log records what a network destination received: one route per confirmed
instance, written when the destination confirmed it (not when the pipeline staged the copy),
with the SHA-256 of the bytes sent after any transcoding. DCMTK storescp --bit-preserving
keeps the data set bytes exactly as received, so the hashes are checked against the peer."""
import hashlib
import os
from pathlib import Path

import pytest
from pydicom import dcmread

from axiom_dagster.destinations.delivery import deliver_destination
from axiom_dagster.store import audit
from axiom_dagster.store.deliveries import DeliveryState
from tests.destinations.support import FAST_RETRY, dataset_bytes, staged
from tests.helpers import free_port, small_archive
from tests.peers.process import start_listener, stop_process

STORESCP = "/usr/bin/storescp"
pytestmark = [pytest.mark.dcmtk, pytest.mark.skipif(not os.path.exists(STORESCP), reason="DCMTK is not installed")]


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("accepts", ["+xi", "+xe"], ids=["implicit-only-transcoded", "explicit-as-stored"])
def test_cstore_route_hash_is_what_the_peer_received(tmp_path, accepts):
    received = tmp_path / "received"
    received.mkdir()
    port = free_port()
    proc = start_listener([STORESCP, accepts, "--bit-preserving", "-aet", "PEER", "-od", str(received), str(port)], port)
    try:
        folder = tmp_path / "in"
        small_archive(folder, studies=1, series=2, instances=2)  # Explicit VR Little Endian
        dest = {"name": "pacs", "type": "dicom", "host": "127.0.0.1", "port": port, "ae_title": "PEER", "retry": FAST_RETRY}
        config, store = staged(tmp_path, [dest], folder)
        rows = DeliveryState(store).rows("pacs")
        # The pipeline staged the copies: nothing has reached the destination yet.
        assert all(audit.routes_of(store, r["sop_uid"]) == [] for r in rows)

        assert deliver_destination(config, store, "pacs", run_id="deliver-1").confirmed == 4
    finally:
        stop_process(proc)
    staged_by_sop = {r["sop_uid"]: Path(r["source_path"]).read_bytes() for r in rows}
    files = list(received.iterdir())
    assert len(files) == 4
    for path in files:
        got = path.read_bytes()
        sop = str(dcmread(path, stop_before_pixels=True).SOPInstanceUID)
        (route,) = audit.routes_of(store, sop)
        assert route["destination"] == "pacs" and route["location"] == f"PEER@127.0.0.1:{port}"
        assert route["run_id"] == "deliver-1" and route["routed_at"] is not None
        assert route["content_sha256"] == _sha(dataset_bytes(got))
        transcoded = accepts == "+xi"
        assert (route["content_sha256"] == _sha(dataset_bytes(staged_by_sop[sop]))) is not transcoded
    (entry,) = audit.entries(store, action="instances.routed")
    assert (entry.actor, entry.target, entry.details["routes"]) == ("delivery", "destination:pacs", 4)
    assert audit.verify(store).ok
