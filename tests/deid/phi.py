"""A data set with an identifying value in every non-sequence attribute of Table E.1-1, nested
sequences and private blocks, and its encoding as Part 10 files in five ways."""
from __future__ import annotations

import struct
import zlib
from io import BytesIO

from pydicom import Dataset, Sequence
from pydicom.datadict import dictionary_VR
from pydicom.dataset import FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import dcmwrite, write_file_meta_info

from axiom_dagster.deid import TABLE

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
RT_PLAN_SEQ = 0x300C0002  # Referenced RT Plan Sequence: not in the table; stored as UN below
UNKNOWN_PUBLIC = 0x07001234  # a public attribute no dictionary knows
TS = {
    "explicit_le": "1.2.840.10008.1.2.1",
    "implicit_le": "1.2.840.10008.1.2",
    "explicit_be": "1.2.840.10008.1.2.2",
    "deflated": "1.2.840.10008.1.2.1.99",
    "all_un": "1.2.840.10008.1.2.1",
}
_NUMERIC = {"US", "SS", "UL", "SL", "FL", "FD", "SV", "UV", "AT"}


def table_vr(tag: int) -> str:
    """The attribute's VR, or UN where the installed dictionary predates the table."""
    try:
        return dictionary_VR(tag).split(" or ")[0]
    except KeyError:
        return "UN"


def phi_value(vr: str, n: int):
    """A value of `vr` unique to attribute number `n` (strings findable in encoded bytes)."""
    day = 1 + n % 28
    month = 1 + (n // 28) % 12
    year = 1930 + n // 336
    return {
        "AE": f"AE{n:05d}PHI", "AS": f"{n % 1000:03d}Y", "CS": f"PHICS{n:05d}", "DA": f"{year}{month:02d}{day:02d}",
        "DS": f"9{n:04d}.25", "DT": f"{year}{month:02d}{day:02d}1010{n % 60:02d}.{n:06d}", "IS": f"9{n:05d}",
        "LO": f"PHI-LO-{n:05d}", "LT": f"PHI-LT-{n:05d}", "PN": f"Doe{n:05d}^Jane{n:05d}", "SH": f"PHI-SH-{n:05d}",
        "ST": f"PHI-ST-{n:05d}", "TM": f"{n % 24:02d}{n % 60:02d}00.{n:06d}", "UC": f"PHI-UC-{n:05d}",
        "UI": f"1.2.826.0.1.3680043.10.999.{10000 + n}", "UR": f"http://phi.example/{n:05d}",
        "UT": f"PHI-UT-{n:05d}", "US": 40000 + n, "SS": -10000 - n, "UL": 700000 + n, "SL": -700000 - n,
        "FL": 7000.5 + n, "FD": 9000.25 + n, "SV": 8_000_000 + n, "UV": 9_000_000 + n, "AT": 0x77770000 + n,
    }.get(vr, b"PHIB%04d" % n)


def nested_item(n: int, depth: int) -> Dataset:
    """An item with identifying table attributes, a private block, an unknown attribute and,
    above the last level, a nested sequence."""
    item = Dataset()
    item.ReferencedSOPClassUID = CT_IMAGE_STORAGE
    item.ReferencedSOPInstanceUID = phi_value("UI", n)
    item.PatientName = phi_value("PN", n + 1)
    item.InstitutionName = phi_value("LO", n + 2)
    item.StudyDate = phi_value("DA", n + 3)
    item.add_new(0x0040A123, "PN", phi_value("PN", n + 4))  # Person Name (D)
    block = item.private_block(0x0041, "ACME PHI", create=True)
    block.add_new(0x01, "LO", phi_value("LO", n + 5))
    item.add_new(UNKNOWN_PUBLIC, "LO", phi_value("LO", n + 6))
    if depth > 1:
        item.add_new(0x00081115, "SQ", Sequence([nested_item(n + 10, depth - 1)]))  # Referenced Series
    return item


def phi_dataset() -> tuple[Dataset, list[tuple[int, object]]]:
    """The data set and every identifying (tag, value) put in it, nested ones included."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    originals: list[tuple[int, object]] = []
    n = 0
    for tag in sorted(TABLE):
        group = tag >> 16
        if group in (0x0000, 0x0002, 0x0004) or group >= 0xFFFA:
            continue  # command, file meta, directory and digital signature/padding elements
        n += 1
        vr = table_vr(tag)
        if vr == "SQ":
            ds.add_new(tag, vr, Sequence([nested_item(1000 + 40 * n, 2)]))
            continue
        ds.add_new(tag, vr, phi_value(vr, n))
        originals.append((tag, ds[tag].value))
    # Repeating groups: an overlay and a curve.
    for tag, vr in ((0x60003000, "OW"), (0x60004000, "LT"), (0x50002000, "US"), (0x50003000, "OB")):
        n += 1
        ds.add_new(tag, vr, phi_value(vr, n))
        originals.append((tag, ds[tag].value))
    ds.add_new(RT_PLAN_SEQ, "SQ", Sequence([nested_item(90000, 3)]))
    ds.add_new(UNKNOWN_PUBLIC, "LO", phi_value("LO", 99990))
    siemens = ds.private_block(0x0019, "SIEMENS MR HEADER", create=True)
    siemens.add_new(0x0C, "IS", "1000")  # B Value: on the safe list
    siemens.add_new(0x08, "LO", phi_value("LO", 99991))  # not on the safe list
    acme = ds.private_block(0x0029, "ACME PHI", create=True)
    acme.add_new(0x10, "OB", b"PHIPRIV1")
    ds.SOPClassUID = CT_IMAGE_STORAGE
    ds.Modality = "CT"
    for elem in ds.iterall():  # nested identifying values too
        if elem.VR != "SQ" and (int(elem.tag), elem.value) not in originals and _is_phi(elem.value):
            originals.append((int(elem.tag), elem.value))
    return ds, originals


def _is_phi(value) -> bool:
    text = value if isinstance(value, (str, bytes)) else str(value)
    return ("PHI" in str(text) or "Doe" in str(text) or "10.999." in str(text)
            or (isinstance(value, str) and value.isdigit() and len(value) == 8))


def findable(value) -> list[bytes]:
    """Byte patterns of a value that must not appear in an output file (numbers are checked
    as values instead: their bytes are not distinctive)."""
    if isinstance(value, bytes):
        return [value]
    if isinstance(value, (int, float)):
        return []
    return [str(value).encode("latin-1")]


def _element_bytes(ds: Dataset, tag: int, implicit: bool, little: bool) -> bytes:
    one = Dataset()
    one._dict[tag] = ds._dict[tag]
    buf = BytesIO()
    dcmwrite(buf, one, implicit_vr=implicit, little_endian=little)
    return buf.getvalue()


def _as_un(ds: Dataset, tag: int, little: bool) -> bytes:
    """The element as VR UN: its implicit VR little endian value, as after an implicit hop."""
    data = _element_bytes(ds, tag, implicit=True, little=True)
    length = struct.unpack("<I", data[4:8])[0]
    value = data[8:]
    fmt = "<HH" if little else ">HH"
    head = struct.pack(fmt, tag >> 16, tag & 0xFFFF) + b"UN\x00\x00"
    return head + struct.pack("<I" if little else ">I", length) + value


def encode(ds: Dataset, encoding: str) -> bytes:
    """A Part 10 file of `ds` in one of TS's encodings. In the explicit ones the Referenced RT
    Plan Sequence is stored as UN; in all_un every element is."""
    implicit = encoding == "implicit_le"
    little = encoding != "explicit_be"
    parts = []
    for tag in sorted(ds._dict):
        if encoding == "all_un" or (tag == RT_PLAN_SEQ and not implicit):
            parts.append(_as_un(ds, tag, little))
        else:
            parts.append(_element_bytes(ds, tag, implicit, little))
    body = b"".join(parts)
    if encoding == "deflated":
        comp = zlib.compressobj(9, zlib.DEFLATED, -15)
        body = comp.compress(body) + comp.flush()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = "1.2.826.0.1.3680043.10.999.1"
    meta.TransferSyntaxUID = TS[encoding]
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, False
    write_file_meta_info(fp, meta)
    return b"\x00" * 128 + b"DICM" + fp.getvalue() + body


def dataset_bytes(part10: bytes, ts: str) -> bytes:
    """The data set part of a Part 10 file, inflated if deflated."""
    group_len = struct.unpack("<I", part10[140:144])[0]
    start = 144 + group_len
    body = part10[start:]
    if ts == TS["deflated"]:
        body = zlib.decompress(body, -15)
    return body
