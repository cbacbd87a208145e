"""Every receiver checks that a data set parses to its end before acknowledging it: a data
set cut inside its last element is refused (C-STORE 0xC000, STOW-RS FailedSOPSequence with
0xC000 and a comment) and kept in quarantine, not landed."""
from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from pynetdicom import AE
from pynetdicom import _config as pynetdicom_config
from pydicom import dcmread

from axiom_dagster.synth import SynthSpec, generate_archive
from axiom_dagster.store.apikeys import create_key
from tests.realtime.support import InProcessService, make_config
from tests.helpers import free_port
from tests.realtime.test_realtime_http import STOW, multipart


@pytest.fixture
def service(tmp_path):
    _, config = make_config(tmp_path, listeners=[{"name": "main", "ae_title": "AXIOM", "port": free_port()}])
    svc = InProcessService(config)
    yield svc
    svc.stop()


def _cut(src: Path, dst: Path) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: len(data) - 301])
    return dst


def test_cstore_refuses_cut_data_set_and_quarantines_it(service, tmp_path, monkeypatch):
    # pynetdicom then sends the file's encoded data set as it is (no decode, no re-encode).
    monkeypatch.setattr(pynetdicom_config, "STORE_SEND_CHUNKED_DATASET", True)
    good, other = generate_archive(tmp_path / "src", SynthSpec(1, 1, 2, 64, 64))
    cut = _cut(other, tmp_path / "cut.dcm")
    ae = AE(ae_title="SENDER")
    for uid in {dcmread(good).SOPClassUID, dcmread(other, stop_before_pixels=True).SOPClassUID}:
        ae.add_requested_context(uid, "1.2.840.10008.1.2.1")
    assoc = ae.associate("127.0.0.1", service.port(), ae_title="AXIOM")
    assert assoc.is_established
    try:
        ok = assoc.send_c_store(good)
        refused = assoc.send_c_store(cut)
    finally:
        assoc.release()
    assert ok.Status == 0x0000
    assert refused.Status == 0xC000 and "parse to its end" in refused.ErrorComment
    (row,) = service.store.ledger_after(0, 10)
    (failure,) = service.store.exceptions("landing")
    assert "does not parse to its end" in failure["reason"] and failure["sop_uid"] != row.sop_uid
    assert Path(failure["quarantine_path"]).stat().st_size > 0


def test_stow_cut_part_in_failed_sop_sequence_and_quarantined(service, tmp_path):
    key = create_key(service.store.engine, "sender", "admin")[1]
    good, other = generate_archive(tmp_path / "src", SynthSpec(1, 1, 2, 64, 64))
    body, ctype = multipart([("application/dicom", good.read_bytes()),
                             ("application/dicom", _cut(other, tmp_path / "cut.dcm").read_bytes())])
    r = httpx.post(service.base_url + STOW, content=body, headers={"Content-Type": ctype, "Authorization": f"Bearer {key}"})
    assert r.status_code == 202, r.text
    doc = r.json()
    assert len(doc["00081199"]["Value"]) == 1
    (failed,) = doc["00081198"]["Value"]
    assert failed["00081197"]["Value"] == [0xC000]
    assert "parse to its end" in failed["00000902"]["Value"][0]
    assert service.store.ledger_count() == 1
    (failure,) = service.store.exceptions("landing")
    assert Path(failure["quarantine_path"]).exists()
