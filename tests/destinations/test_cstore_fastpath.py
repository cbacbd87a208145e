"""The C-STORE fast path against the library it stands in for: the command set and P-DATA
fragments against pynetdicom's DIMSE encoding (byte for byte)."""
from io import BytesIO
from pathlib import Path

import pytest
from pydicom.data import get_testdata_file
from pynetdicom.dimse_messages import C_STORE_RQ
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.dsutils import encode

from axiom_dagster.destinations.cstore_session import command_set, p_data
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
