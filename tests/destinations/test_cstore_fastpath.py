"""The C-STORE fast path against the library it stands in for: the command set and P-DATA
fragments against pynetdicom's DIMSE encoding (byte for byte), the C-STORE-RSP reader against
pynetdicom's decoding."""
from io import BytesIO
from pathlib import Path

import pytest
from pydicom.data import get_testdata_file
from pynetdicom.dimse_messages import C_ECHO_RSP, C_STORE_RQ, C_STORE_RSP
from pynetdicom.dimse_primitives import C_ECHO, C_STORE
from pynetdicom.dsutils import decode, encode

from axiom_dagster.destinations.cstore_session import StoreResponse, command_set, p_data, store_response
from axiom_dagster.destinations.dimse import encoded_dataset
from axiom_dagster.dicom.file_meta import read_file_meta


def _library_message(sop_class: str, sop_instance: str, msg_id: int, data: bytes) -> C_STORE_RQ:
    req = C_STORE()
    req.MessageID, req.Priority = msg_id, 2
    req.AffectedSOPClassUID, req.AffectedSOPInstanceUID = sop_class, sop_instance
    req.DataSet = BytesIO(data)
    msg = C_STORE_RQ()
    msg.primitive_to_message(req)
    return msg


@pytest.mark.parametrize("sop_instance", ["1.2.3.4", "1.2.840.10008.5.1.4.1.1.2.12345"])  # even and odd length
@pytest.mark.parametrize("max_pdu", [0, 16384, 1000, 131072])
def test_command_set_and_fragments_match_pynetdicom(sop_instance, max_pdu):
    path = get_testdata_file("CT_small.dcm", download=False)
    meta = read_file_meta(Path(path).read_bytes())
    data = encoded_dataset(path, meta.transfer_syntax, meta.transfer_syntax)
    msg = _library_message(meta.sop_class, sop_instance, 65535, data)
    ours = command_set(meta.sop_class, sop_instance, 65535)
    assert ours == encode(msg.command_set, True, True)
    library = [p.presentation_data_value_list for p in msg.encode_msg(7, max_pdu)]
    assert [p.presentation_data_value_list for p in p_data(7, ours, data, max_pdu)] == library


def test_sent_as_stored_is_the_file_after_its_meta():
    path = get_testdata_file("CT_small.dcm", download=False)
    meta = read_file_meta(Path(path).read_bytes())
    assert encoded_dataset(path, meta.transfer_syntax, meta.transfer_syntax) == Path(path).read_bytes()[meta.offset:]


def _library_response(**fields) -> bytes:
    """A C-STORE-RSP command set as pynetdicom encodes it (one P-DATA, control header 0x03)."""
    rsp = C_STORE()
    rsp.MessageIDBeingRespondedTo = 7
    rsp.AffectedSOPClassUID, rsp.AffectedSOPInstanceUID = "1.2.840.10008.5.1.4.1.1.7", "1.2.3.4.5"
    for name, value in fields.items():
        setattr(rsp, name, value)
    msg = C_STORE_RSP()
    msg.primitive_to_message(rsp)
    (pdata,) = list(msg.encode_msg(1, 16384))
    ((_, data),) = pdata.presentation_data_value_list
    assert data[0] == 0x03
    return data[1:]


@pytest.mark.parametrize("fields", [
    {"Status": 0x0000}, {"Status": 0xB000}, {"Status": 0x0111},
    {"Status": 0xA700, "ErrorComment": "out of resources"},
    {"Status": 0xC000, "OffendingElement": [0x00100010], "ErrorComment": "x" * 63},
])
def test_store_response_matches_pynetdicom_decoding(fields):
    command = _library_response(**fields)
    library = decode(BytesIO(command), True, True)
    assert store_response(command) == StoreResponse(library.MessageIDBeingRespondedTo, library.Status)


def test_other_messages_are_left_to_pynetdicom():
    echo = C_ECHO()
    echo.MessageIDBeingRespondedTo, echo.Status = 1, 0
    msg = C_ECHO_RSP()
    msg.primitive_to_message(echo)
    (pdata,) = list(msg.encode_msg(1, 16384))
    assert store_response(pdata.presentation_data_value_list[0][1][1:]) is None
    command = _library_response(Status=0)
    assert store_response(command[:-1]) is None  # cut short
    assert store_response(command + b"\x00\x00") is None  # trailing bytes
