"""A pydicom Dataset from a raw header (dicom/header_reader.py) and the file's bytes, without
pydicom reading the file again.

It holds the raw elements `dcmread(BytesIO(data))` holds before any value is converted,
bulk values included, and a File Meta Information with the transfer syntax only. Enough to
validate an instance, render its destination path and pass it through unchanged (it is
never re-encoded: the copy is the file's bytes); a morpher that changes data sets gets
pydicom's own FileDataset instead. tests/dicom/test_header_dataset.py compares both.
"""
from __future__ import annotations

from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.tag import BaseTag

from axiom_dagster.dicom.header_reader import RawHeader


def header_dataset(header: RawHeader, data: bytes) -> Dataset:
    """The data set of the Part 10 file `data` whose header `header` is."""
    implicit, little = header.implicit, header.little
    raw = {}
    for tag, (vr, length, value, tell, size) in header.elements.items():
        if value is None and length:  # bulk data the header reader did not copy
            value = data[tell : tell + size]
        t = BaseTag(tag)
        raw[t] = RawDataElement(t, vr, length, value, tell, implicit, little)
    ds = Dataset(raw)
    ds.set_original_encoding(implicit, little, ds._character_set)
    meta = FileMetaDataset()
    meta.TransferSyntaxUID = header.transfer_syntax
    ds.file_meta = meta
    return ds
