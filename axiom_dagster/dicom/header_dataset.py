"""A pydicom Dataset from a raw header (dicom/header_reader.py) and the file's bytes, without
pydicom reading the file again.

It holds the raw elements `dcmread(BytesIO(data))` holds before any value is converted,
bulk values included, and a File Meta Information with the transfer syntax only. Enough to
validate an instance, render its destination path and pass it through unchanged (it is
never re-encoded: the copy is the file's bytes); a morpher that changes data sets gets
pydicom's own FileDataset instead. tests/dicom/test_header_dataset.py compares both.
"""
from __future__ import annotations

import functools

from pydicom.charset import convert_encodings, default_encoding
from pydicom.dataelem import RawDataElement, convert_raw_data_element
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.tag import BaseTag

from axiom_dagster.dicom.header_reader import CHARSET, RawHeader

_TRANSFER_SYNTAX = BaseTag(0x00020010)
_CHARSET = BaseTag(CHARSET)


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
    charset = raw.get(_CHARSET)
    encodings = list(_encodings(charset.value, charset.length, charset.VR, implicit, little)) if charset else default_encoding
    ds.set_original_encoding(implicit, little, encodings)
    syntax = header.transfer_syntax.encode("ascii")
    syntax += b"\0" * (len(syntax) % 2)
    ds.file_meta = FileMetaDataset({_TRANSFER_SYNTAX: RawDataElement(_TRANSFER_SYNTAX, "UI", len(syntax), syntax, 0, False, True)})
    return ds


@functools.lru_cache(maxsize=64)
def _encodings(value: bytes | None, length: int, vr: str | None, implicit: bool, little: bool) -> tuple[str, ...]:
    """Python encodings of a raw Specific Character Set, as pydicom's reader derives them
    (converted once per distinct value here, not once per file)."""
    elem = RawDataElement(_CHARSET, vr, length, value, 0, implicit, little)
    return tuple(convert_encodings(convert_raw_data_element(elem).value))
