"""The C-STORE receive path that reads requests off the DUL thread (dicom/store_receiver.py):
its command sets against pynetdicom's encoding, and the listener against a pynetdicom SCU that
fragments everything (tiny PDUs both ways), aborts mid data set, or echoes."""
from __future__ import annotations

import time
from io import BytesIO

import pytest
from pydicom import dcmread
from pynetdicom import AE
from pynetdicom.dimse_messages import C_ECHO_RSP, C_STORE_RQ, C_STORE_RSP
from pynetdicom.dimse_primitives import C_ECHO, C_STORE
from pynetdicom.dsutils import decode, encode
from pynetdicom.pdu_primitives import P_DATA
from pynetdicom.sop_class import Verification

from axiom_dagster.dicom import dimse_commands as dc
from axiom_dagster.synth import SynthSpec, generate_archive
from tests.helpers import free_port
from tests.realtime.support import InProcessService, dataset_bytes, make_config

EXPLICIT_LE = "1.2.840.10008.1.2.1"


def _library_command(message_class, primitive) -> bytes:
    msg = message_class()
    msg.primitive_to_message(primitive)
    return encode(msg.command_set, True, True)


@pytest.mark.parametrize("status,comment", [(0x0000, ""), (0xA700, "not stored: OSError"), (0xC000, "odd")])
def test_store_response_matches_pynetdicom(status, comment):
    rsp = C_STORE()
    rsp.MessageIDBeingRespondedTo, rsp.Status = 513, status
    rsp.AffectedSOPClassUID, rsp.AffectedSOPInstanceUID = "1.2.840.10008.5.1.4.1.1.7", "1.2.3.45"
    if comment:
        rsp.ErrorComment = comment
    ours = dc.response_set(dc.C_STORE_RSP, 513, status, "1.2.840.10008.5.1.4.1.1.7", "1.2.3.45", comment)
    assert ours == _library_command(C_STORE_RSP, rsp)


def test_echo_response_and_request_decoding_match_pynetdicom():
    echo = C_ECHO()
    echo.MessageIDBeingRespondedTo, echo.Status, echo.AffectedSOPClassUID = 9, 0, Verification
    assert dc.response_set(dc.C_ECHO_RSP, 9, 0, Verification) == _library_command(C_ECHO_RSP, echo)
    req = C_STORE()
    req.MessageID, req.Priority = 77, 2
    req.AffectedSOPClassUID, req.AffectedSOPInstanceUID = "1.2.840.10008.5.1.4.1.1.2", "1.2.3.4.5"
    req.DataSet = BytesIO(b"")
    fields = dc.decode_command(_library_command(C_STORE_RQ, req))
    assert dc.us(fields, dc.COMMAND_FIELD) == dc.C_STORE_RQ and dc.us(fields, dc.MESSAGE_ID) == 77
    assert dc.text(fields, dc.AFFECTED_SOP_INSTANCE_UID) == "1.2.3.4.5"
    assert dc.us(fields, dc.COMMAND_DATA_SET_TYPE) != dc.NO_DATA_SET
    library = decode(BytesIO(_library_command(C_STORE_RQ, req)), True, True)
    assert library.MessageID == 77


def test_broken_command_sets_are_errors():
    good = dc.response_set(dc.C_ECHO_RSP, 1, 0)
    with pytest.raises(dc.CommandError):
        dc.decode_command(good[:-1])
    with pytest.raises(dc.CommandError):
        dc.decode_command(good + b"\x00\x00")


def test_command_pdus_fragment_within_the_peer_maximum():
    command = dc.response_set(dc.C_STORE_RSP, 1, 0, "1.2.840.10008.5.1.4.1.1.2", "1.2.3.4.5")
    pdus = dc.command_pdus(3, command, 40)
    pos, fragments = 0, []
    while pos < len(pdus):
        length = int.from_bytes(pdus[pos + 2:pos + 6], "big")
        assert pdus[pos] == 0x04 and 6 + length <= 40 + 6
        item = pdus[pos + 6:pos + 6 + length]
        assert item[4] == 3  # presentation context ID
        fragments.append((item[5], item[6:]))
        pos += 6 + length
    assert b"".join(f for _, f in fragments) == command
    assert [c for c, _ in fragments] == [0x01] * (len(fragments) - 1) + [0x03]


@pytest.fixture
def tiny_pdu_service(tmp_path):
    # 128-byte PDUs: every command set and data set arrives in many PDV fragments
    _, config = make_config(tmp_path, listeners=[
        {"name": "main", "ae_title": "AXIOM", "port": free_port(), "max_pdu_size": 128}])
    svc = InProcessService(config)
    yield svc
    svc.stop()


def _association(port: int, sop_class: str, max_pdu: int = 16384):
    ae = AE(ae_title="TINY")
    ae.add_requested_context(sop_class, EXPLICIT_LE)
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", port, ae_title="AXIOM", max_pdu=max_pdu)
    assert assoc.is_established
    return assoc


def test_fragmented_commands_and_data_both_ways(tiny_pdu_service, tmp_path):
    files = generate_archive(tmp_path / "src", SynthSpec(1, 1, 3, 32, 32))
    sop_class = dcmread(files[0], stop_before_pixels=True).SOPClassUID
    assoc = _association(tiny_pdu_service.port(), sop_class, max_pdu=64)  # our responses fragmented too
    try:
        assert assoc.send_c_echo().Status == 0x0000
        statuses = [assoc.send_c_store(dcmread(f)).Status for f in files]
    finally:
        assoc.release()
    assert statuses == [0x0000] * 3
    rows = {r.sop_uid: r for r in tiny_pdu_service.store.ledger_after(0, 100)}
    assert len(rows) == 3
    for f in files:
        ds = dcmread(f)
        assert dcmread(rows[ds.SOPInstanceUID].path).PixelData == ds.PixelData


def test_abort_mid_data_set_lands_nothing_and_leaves_no_spool_file(tiny_pdu_service, tmp_path):
    (path,) = generate_archive(tmp_path / "src", SynthSpec(1, 1, 1, 32, 32))
    ds = dcmread(path, stop_before_pixels=True)
    assoc = _association(tiny_pdu_service.port(), ds.SOPClassUID)
    context_id = next(iter(assoc._accepted_cx.values())).context_id
    command = dc.command_set(ds.SOPClassUID, ds.SOPInstanceUID, 1)
    for control, fragment in ((0x03, command), (0x00, dataset_bytes(path)[:100])):  # data set not finished
        pdata = P_DATA()
        pdata.presentation_data_value_list.append((context_id, bytes([control]) + fragment))
        assoc.dul.send_pdu(pdata)
    listener = tiny_pdu_service.service.listeners[0]
    deadline = time.monotonic() + 5
    while not any(listener.spool.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert any(listener.spool.iterdir()), "the first fragment should be spooled"
    assoc.abort()
    deadline = time.monotonic() + 5
    while any(listener.spool.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not any(listener.spool.iterdir())
    assert tiny_pdu_service.store.ledger_after(0, 10) == []


def test_damaged_uid_bytes_are_echoed_back_unchanged():
    # a damaged file's request may carry non-ASCII bytes in its UIDs: the response repeats them
    raw = b"1.2.840.\xe9\xff"
    command = dc.encode_command(dc.element(dc.AFFECTED_SOP_INSTANCE_UID, raw))
    value = dc.text(dc.decode_command(command), dc.AFFECTED_SOP_INSTANCE_UID)
    response = dc.response_set(dc.C_STORE_RSP, 1, 0xC000, "1.2", value, "unreadable")
    assert dc.decode_command(response)[dc.AFFECTED_SOP_INSTANCE_UID] == raw
