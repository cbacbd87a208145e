"""One catalog row from one parsed data set: typed columns, the header as DICOM JSON
(PS3.18 F.2) without bulk data, and per-row conversion warnings.

Nothing here raises for a bad value: a value that cannot be converted becomes NULL and
the row's `warnings` names the attribute and the problem (never the value: no PHI).
"""
from __future__ import annotations

import json
import os
from datetime import datetime, time
from typing import Any, Callable

from pydicom import Dataset
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import RawDataElement
from pydicom.tag import Tag

from axiom_dagster.catalog.converters import CONVERTERS, LIST_CONVERTERS
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


# FastTag probes: dict lookups compare in C (see dicom.fastvalues.FastTag).
_PLAN = tuple((a.column, FastTag(Tag(a.keyword)), a.keyword, CONVERTERS[a.kind], LIST_CONVERTERS[a.kind]) for a in ATTRIBUTES)


_PLAN_AT = {int(tag): index for index, (_column, tag, *_rest) in enumerate(_PLAN)}
_NO_VALUES = {column: None for column, *_rest in _PLAN}


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
        entries = []
        for value in values:
            comps = value.split("=")
            entry = {"Alphabetic": comps[0]}
            if len(comps) > 1:
                entry["Ideographic"] = comps[1]
            if len(comps) > 2:
                entry["Phonetic"] = comps[2]
            entries.append(entry)
        return {"vr": vr, "Value": entries}
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
    return dump_json(out, bulk, warnings), bulk, pixel_length


def dump_json(out: dict, bulk: list[dict], warnings: list[str]) -> str:
    """The DICOM JSON text of `out`, after moving nested bulk data markers into `bulk`."""
    _strip_nested_bulk(out, "", bulk)
    try:
        return _dumps(out)
    except ValueError:  # a non-finite number (DS "inf", FD NaN): leave those elements out
        for key in list(out):
            try:
                json.dumps(out[key], allow_nan=False)
            except ValueError:
                warnings.append(f"({key[:4]},{key[4:]}) left out of dicom_json: not a finite number")
                del out[key]
        return _dumps(out)


_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode


def attribute_values(ds: Dataset, warnings: list[str], fast: dict | None = None) -> dict[str, Any]:
    """The typed columns; a value that cannot be converted is None with a warning.
    `fast`: values already decoded from raw bytes by header_json, by tag."""
    return typed_values(ds._dict, lambda tag: ds[tag].value, warnings, fast or {})


def typed_values(present, element_value: Callable[[int], Any], warnings: list[str], fast: dict) -> dict[str, Any]:
    """The typed columns from the tags `present` (a mapping), the values already decoded
    (`fast`, by tag) and pydicom's value of the others (`element_value`)."""
    row = dict(_NO_VALUES)
    # Only the attributes present, in column order (warnings keep that order).
    for index in sorted(_PLAN_AT[tag] for tag in present.keys() & _PLAN_AT.keys()):
        column, tag, keyword, convert, convert_list = _PLAN[index]
        try:
            values = fast.get(tag)
            row[column] = convert(element_value(tag)) if values is None else convert_list(values)
        except Fallback:
            raise
        except Exception as exc:
            row[column] = None
            warnings.append(f"{keyword} {_tag_name(tag)}: cannot convert to {column} ({type(exc).__name__})")
    if row["study_date"] is not None:
        row["study_datetime"] = datetime.combine(row["study_date"], row["study_time"] or time())
    else:
        row["study_datetime"] = None
    return row


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
    return finish_row(row, str(ts) if ts else None, ledger_row, file_path=file_path, file_size=file_size,
                      file_mtime=file_mtime, received_at=received_at, batch_id=batch_id, run_id=run_id,
                      status=status, destinations=destinations, warnings=warnings)


def finish_row(row: dict, transfer_syntax: str | None, ledger_row: LedgerRow | None, *, file_path, file_size, file_mtime,
               received_at, batch_id, run_id, status, destinations, warnings) -> dict[str, Any]:
    """The transfer syntax and provenance columns of a row."""
    row["transfer_syntax_uid"] = transfer_syntax
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
