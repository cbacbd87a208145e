"""A peer that accepts only Implicit VR Little Endian (DCMTK storescp +xi) receives transcoded
copies of explicit-VR instances; compressed instances it cannot take fail with a reason."""
import os
import shutil
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.uid import ImplicitVRLittleEndian

from axiom_dagster.destinations.delivery import deliver_destination
from axiom_dagster.store.deliveries import DeliveryState
from tests.destinations.support import FAST_RETRY, staged
from tests.helpers import small_archive
from tests.helpers import free_port
from tests.peers.process import start_listener, stop_process

STORESCP = "/usr/bin/storescp"
NO_CONTEXT = "association aborted during negotiation (no proposed presentation context accepted, or A-ABORT)"
pytestmark = [pytest.mark.dcmtk, pytest.mark.skipif(not os.path.exists(STORESCP), reason="DCMTK is not installed")]


@pytest.fixture
def implicit_only_scp(tmp_path):
    out = tmp_path / "received"
    out.mkdir()
    port = free_port()
    proc = start_listener(
        [STORESCP, "+xi", "--bit-preserving", "-aet", "IMPLICIT", "-od", str(out), str(port)],
        port,
    )
    yield port, out
    stop_process(proc)


def test_implicit_only_peer_receives_transcoded_data(tmp_path, implicit_only_scp):
    port, received = implicit_only_scp
    folder = tmp_path / "in"
    small_archive(folder, studies=1, series=1, instances=3)
    for name in ("CT_small.dcm", "MR_small_bigendian.dcm", "JPEG2000.dcm"):
        shutil.copy(get_testdata_file(name, download=False), folder / name)
    dest = {"name": "legacy", "type": "dicom", "host": "127.0.0.1", "port": port, "ae_title": "IMPLICIT", "retry": FAST_RETRY}
    config, store = staged(tmp_path, [dest], folder)

    report = deliver_destination(config, store, "legacy")
    rows = {Path(r["source_path"]).name: r for r in DeliveryState(store).rows("legacy")}
    assert report.confirmed == 4
    # JPEG 2000 and (retired) Explicit VR Big Endian are not transcoded: each fails alone.
    not_sent = {r["sop_uid"]: r["error"] for r in rows.values() if r["status"] != "confirmed"}
    assert not_sent == {
        "1.3.6.1.4.1.5962.1.1.8.1.3.20040826185059.5457": NO_CONTEXT,
        "1.3.6.1.4.1.5962.1.1.4.1.1.20040826185059.5457": NO_CONTEXT,
    }

    files = list(received.iterdir())
    assert len(files) == 4
    for path in files:
        got = dcmread(path)
        assert got.file_meta.TransferSyntaxUID == ImplicitVRLittleEndian
        sent = dcmread(next(r["source_path"] for r in rows.values() if r["sop_uid"] == got.SOPInstanceUID))
        assert sent.file_meta.TransferSyntaxUID != ImplicitVRLittleEndian
        # Same elements and values; only the encoding changed.
        for elem in sent:
            assert got[elem.tag].value == elem.value, elem.keyword
