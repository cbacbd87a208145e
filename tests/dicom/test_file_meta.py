"""The raw File Meta reader (C-STORE and STOW-RS senders) against pydicom's meta reader and
pynetdicom's split_dataset, on every Part 10 test file pydicom ships."""
from pathlib import Path

import pytest
from pydicom.data import get_testdata_files
from pydicom.filereader import read_file_meta_info
from pynetdicom.dsutils import split_dataset

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
