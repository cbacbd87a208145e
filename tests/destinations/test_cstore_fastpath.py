"""The C-STORE fast paths against the libraries they stand in for: the File Meta reader
against pydicom and pynetdicom, the command set and P-DATA fragments against pynetdicom's
DIMSE encoding (byte for byte)."""
from io import BytesIO
from pathlib import Path

import pytest
from pydicom.data import get_testdata_file, get_testdata_files
from pydicom.filereader import read_file_meta_info
from pynetdicom.dimse_messages import C_STORE_RQ
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.dsutils import encode, split_dataset

from axiom_dagster.destinations.cstore_session import command_set, p_data
from axiom_dagster.destinations.dimse import encoded_dataset
from axiom_dagster.dicom.file_meta import NotPlainPart10, read_file_meta


def test_file_meta_matches_pydicom_and_pynetdicom():
    checked = 0
    for name in get_testdata_files("*.dcm"):
        data = Path(name).read_bytes()
        try:
            meta = read_file_meta(data)
        except NotPlainPart10:
            continue  # the sender reads these with pydicom
        checked += 1
        fm = read_file_meta_info(name)
        assert (meta.sop_class, meta.sop_instance, meta.transfer_syntax) == (
            fm.MediaStorageSOPClassUID, fm.MediaStorageSOPInstanceUID, fm.TransferSyntaxUID), name
        assert meta.offset == split_dataset(Path(name))[1], name
    assert checked >= 50


def test_file_meta_refuses_what_it_does_not_handle():
    with pytest.raises(NotPlainPart10):
        read_file_meta(b"\0" * 128 + b"DICM" + b"\x02\x00\x10\x00UI")  # cut short, nothing found
    with pytest.raises(NotPlainPart10):
        read_file_meta(b"not dicom at all" * 20)


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
