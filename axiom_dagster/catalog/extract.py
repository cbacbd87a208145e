"""One catalog row from one parsed data set: typed columns, the header as DICOM JSON
(PS3.18 F.2) without bulk data, and per-row conversion warnings.

Nothing here raises for a bad value: a value that cannot be converted becomes NULL and
the row's `warnings` names the attribute and the problem (never the value: no PHI).
"""
from __future__ import annotations

import json
import math
import os
from datetime import date, datetime, time
from typing import Any, Callable

from pydicom import Dataset, config
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import RawDataElement
from pydicom.multival import MultiValue
from pydicom.tag import Tag
from pydicom.valuerep import DA, DT, IS, TM

from axiom_dagster.catalog.schema import ATTRIBUTES, SCHEMA_VERSION
from axiom_dagster.dicom.fastvalues import Fallback, FastTag, dataset_codec, decode, pydicom_defaults
from axiom_dagster.store.records import LedgerRow

# Binary values longer than this (and Pixel Data always) are left out of dicom_json; the
# row's bulk_data lists each one's path, VR and length.
BULK_DATA_THRESHOLD = 1024
BULK_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN", "OB or OW", "OW or OB"})
PIXEL_DATA_TAGS = frozenset({0x7FE00008, 0x7FE00009, 0x7FE00010})
_UNDEFINED = 0xFFFFFFFF
DEFLATED = "1.2.840.10008.1.2.1.99"


def _values(value) -> list:
    if isinstance(value, (MultiValue, list, tuple)):
        return list(value)
    return [] if value in (None, "") else [value]


def _text(value) -> str | None:
    values = _values(value)
    return "\\".join(map(str, values)) if values else None


def _texts(value) -> list[str] | None:
    values = _values(value)
    return [str(v) for v in values] if values else None


def _single(value):
    values = _values(value)
    if len(values) > 1:
        raise ValueError(f"{len(values)} values in a single-valued column")
    return values[0] if values else None


def _int(value) -> int | None:
    v = _single(value)
    return None if v is None else int(v)


def _finite(number) -> float:
    number = float(number)
    if not math.isfinite(number):
        raise ValueError("not a finite number")
    return number


def _float(value) -> float | None:
    v = _single(value)
    return None if v is None else _finite(v)


def _floats(value) -> list[float] | None:
    values = _values(value)
    return [_finite(v) for v in values] if values else None


def _date(value) -> date | None:
    v = _single(value)
    if v is None:
        return None
    d = v if isinstance(v, date) else DA(str(v), validation_mode=config.IGNORE)  # DA also reads ACR-NEMA's 1997.04.24
    if d is None:
        return None
    return date(d.year, d.month, d.day)


def _time(value) -> time | None:
    v = _single(value)
    if v is None:
        return None
    t = v if isinstance(v, time) else TM(str(v), validation_mode=config.IGNORE)
    return None if t is None else time(t.hour, t.minute, t.second, t.microsecond)


def _datetime(value) -> datetime | None:
    v = _single(value)
    if v is None:
        return None
    d = v if isinstance(v, datetime) else DT(str(v), validation_mode=config.IGNORE)
    # Stored as written: a UTC offset in the value is dropped (the JSON keeps it).
    return None if d is None else datetime(d.year, d.month, d.day, d.hour, d.minute, d.second, d.microsecond)


CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "text": _text, "texts": _texts, "int": _int, "float": _float, "floats": _floats,
    "date": _date, "time": _time, "datetime": _datetime,
}
# FastTag probes: dict lookups compare in C (see dicom.fastvalues.FastTag).
_PLAN = tuple((a.column, FastTag(Tag(a.keyword)), a.keyword, CONVERTERS[a.kind]) for a in ATTRIBUTES)


def _tag_name(tag: int) -> str:
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


def _raw_vr(tag: int, raw: RawDataElement) -> str:
    if raw.VR:
        return str(raw.VR)
    try:
        return dictionary_VR(tag)
    except KeyError:
        return "UN"


def _deferred_length(ds: Dataset, tag: int, elem: RawDataElement) -> int:
    """Length of a value pydicom left in the file (read with defer_size), without reading it."""
    filename = getattr(ds, "filename", None)
    size = os.path.getsize(filename) if isinstance(filename, (str, os.PathLike)) else None
    meta = getattr(ds, "file_meta", None)
    if meta is not None and meta.get("TransferSyntaxUID") == DEFLATED:
        size = None  # positions are in the inflated stream, not the file
    if elem.length != _UNDEFINED:
        # A truncated file declares more than it has: count what is there, as pydicom reads it.
        return elem.length if size is None else max(0, min(elem.length, size - elem.value_tell))
    if size is not None and next(reversed(ds._dict)) == tag:
        return size - elem.value_tell - 8  # encapsulated, last in the file: up to the delimiter
    return len(ds[tag].value)  # rare: read it


def _bulk_marker(elem) -> str:
    """Called by pydicom for nested binary values above the threshold: keep VR and length."""
    value = elem.value
    return f"{elem.VR}:{len(value) if value is not None else 0}"


def _strip_nested_bulk(json_dict: dict, prefix: str, bulk: list[dict]) -> None:
    for key in list(json_dict):
        element = json_dict[key]
        uri = element.get("BulkDataURI")
        if uri is not None:
            vr, _, length = uri.rpartition(":")
            bulk.append({"path": prefix + key, "vr": element.get("vr", vr), "length": int(length)})
            del json_dict[key]
        elif element.get("vr") == "SQ":
            for i, item in enumerate(element.get("Value", ())):
                _strip_nested_bulk(item, f"{prefix}{key}[{i}].", bulk)


# VRs whose DICOM JSON is built here from the raw bytes (one value, no backslash), as
# pydicom's to_json_dict builds it; everything else goes through pydicom.
_FAST_TEXT = frozenset({"AE", "AS", "CS", "DA", "DT", "LO", "LT", "SH", "ST", "TM", "UC", "UI", "UT"})
_FAST_NUMBERS = {"IS": int, "DS": float, "US": int, "UL": int, "SS": int, "SL": int, "FL": float, "FD": float}


def _fast_json(vr: str, values: list) -> dict:
    if not values:
        return {"vr": vr}
    if vr == "PN":
        comps = values[0].split("=")
        entry = {"Alphabetic": comps[0]}
        if len(comps) > 1:
            entry["Ideographic"] = comps[1]
        if len(comps) > 2:
            entry["Phonetic"] = comps[2]
        return {"vr": vr, "Value": [entry]}
    number = _FAST_NUMBERS.get(vr)
    if number is int and vr == "IS":
        return {"vr": vr, "Value": [int(v) if v.isdigit() else int(float(v)) for v in values]}
    if number is not None:
        return {"vr": vr, "Value": [number(v) for v in values]}
    return {"vr": vr, "Value": values}


def header_json(ds: Dataset, warnings: list[str], fast: dict | None = None) -> tuple[str, list[dict], int | None]:
    """The data set as DICOM JSON without bulk data; the bulk data left out; Pixel Data's length.

    `fast` (when given) receives the decoded values of the elements built from raw bytes,
    for the typed columns to reuse."""
    out: dict[str, dict] = {}
    bulk: list[dict] = []
    pixel_length = None
    codec = dataset_codec(ds) if fast is not None and pydicom_defaults() else None
    for tag, elem in ds._dict.items():
        if isinstance(elem, RawDataElement):
            vr = _raw_vr(tag, elem)
            value = elem.value
            if codec is not None and value is not None and (vr in _FAST_TEXT or vr in _FAST_NUMBERS or vr == "PN") \
                    and (vr in ("US", "UL", "SS", "SL", "FL", "FD") or 92 not in value):
                try:
                    values = decode(value, vr, elem.is_little_endian, codec)
                except Fallback:
                    pass
                else:
                    if len(values) <= 1 or vr in ("US", "UL", "SS", "SL", "FL", "FD"):
                        out[f"{tag:08X}"] = _fast_json(vr, values)
                        fast[tag] = values
                        continue
            length = len(value) if value is not None else _deferred_length(ds, tag, elem)
            if tag in PIXEL_DATA_TAGS or (vr in BULK_VRS and length > BULK_DATA_THRESHOLD):
                bulk.append({"path": f"{tag:08X}", "vr": vr.split(" ")[0], "length": length})
                if tag in PIXEL_DATA_TAGS:
                    pixel_length = length
                continue
        try:
            element = ds[tag]
            out[f"{tag:08X}"] = element.to_json_dict(_bulk_marker, BULK_DATA_THRESHOLD)
        except Exception as exc:  # one damaged element must not cost the row
            warnings.append(f"{_tag_name(tag)} left out of dicom_json: {type(exc).__name__}")
    _strip_nested_bulk(out, "", bulk)
    try:
        text = json.dumps(out, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except ValueError:  # a non-finite number (DS "inf", FD NaN): leave those elements out
        for key in list(out):
            try:
                json.dumps(out[key], allow_nan=False)
            except ValueError:
                warnings.append(f"({key[:4]},{key[4:]}) left out of dicom_json: not a finite number")
                del out[key]
        text = json.dumps(out, ensure_ascii=False, separators=(",", ":"))
    return text, bulk, pixel_length


def attribute_values(ds: Dataset, warnings: list[str], fast: dict | None = None) -> dict[str, Any]:
    """The typed columns; a value that cannot be converted is None with a warning.
    `fast`: values already decoded from raw bytes by header_json, by tag."""
    row: dict[str, Any] = {}
    get = ds._dict.get
    fast = fast or {}
    for column, tag, keyword, convert in _PLAN:
        if get(tag) is None:
            row[column] = None
            continue
        try:
            values = fast.get(tag)
            row[column] = convert(ds[tag].value if values is None else _as_pydicom(tag, values))
        except Exception as exc:
            row[column] = None
            warnings.append(f"{keyword} {_tag_name(tag)}: cannot convert to {column} ({type(exc).__name__})")
    if row["study_date"] is not None:
        row["study_datetime"] = datetime.combine(row["study_date"], row["study_time"] or time())
    else:
        row["study_datetime"] = None
    return row


def _as_pydicom(tag: int, values: list):
    """Decoded raw values in the form the converters expect from pydicom (IS as its number)."""
    if values and tag in _IS_TAGS and isinstance(values[0], str):
        return [IS(v, validation_mode=config.IGNORE) for v in values]
    return values


_IS_TAGS = frozenset(Tag(a.keyword) for a in ATTRIBUTES if a.kind == "int")


def instance_row(
    ds: Dataset,
    ledger_row: LedgerRow | None = None,
    *,
    file_path: str | None = None,
    file_size: int | None = None,
    file_mtime: datetime | None = None,
    received_at: datetime | None = None,
    batch_id: int | None = None,
    run_id: str | None = None,
    status: str = "catalogued",
    destinations: list[str] | None = None,
) -> dict[str, Any]:
    """The catalog row of one instance. Never raises for a damaged value: see `warnings`."""
    warnings: list[str] = []
    fast: dict = {}
    json_text, bulk, pixel_length = header_json(ds, warnings, fast)
    row = attribute_values(ds, warnings, fast)
    row["dicom_json"], row["bulk_data"], row["pixel_data_length"] = json_text, bulk, pixel_length
    meta = getattr(ds, "file_meta", None)
    ts = meta.get("TransferSyntaxUID") if meta is not None else None
    row["transfer_syntax_uid"] = str(ts) if ts else None
    if ledger_row is not None:
        file_path = file_path or ledger_row.path
        file_size = file_size if file_size is not None else ledger_row.size
        received_at = received_at or ledger_row.received_at
    row.update(
        file_path=file_path, file_size=file_size, file_mtime=file_mtime, received_at=received_at,
        source=ledger_row.source if ledger_row else None,
        calling_ae=ledger_row.calling_ae if ledger_row else None,
        ledger_id=ledger_row.id if ledger_row else None,
        batch_id=batch_id, run_id=run_id, status=status, destinations=destinations or [],
        warnings=warnings, schema_version=SCHEMA_VERSION,
    )
    return row
