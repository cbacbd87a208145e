"""One catalog row from a file's raw header (dicom/header_reader.py), without pydicom's
reading: the same row `extract.instance_row(dcmread(path, defer_size=1024))` gives.

The common elements (text, numbers, small binary values) are rendered from their bytes
with the raw decoders of dicom/fastvalues.py; any other element (sequences, multi-valued
text, AT, private elements of implicit VR data sets, ...) is converted by pydicom from a
Dataset holding the same raw elements pydicom's reader would hold, so its JSON and value
are pydicom's own. `Fallback` from here means: read this file with pydicom instead.
tests/catalog/test_fast_extract.py compares both paths row for row.
"""
from __future__ import annotations

import base64
import functools
import json
import math
from typing import Any

from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import BaseTag

from axiom_dagster.catalog.extract import (
    BULK_DATA_THRESHOLD, _FAST_NUMBERS, _FAST_TEXT, _bulk_marker, _fast_json, _strip_nested_bulk, _tag_name, finish_row,
    typed_values,
)
from axiom_dagster.catalog.sequence_json import sequence_json
from axiom_dagster.dicom.fastvalues import DECODERS, Fallback, dataset_codec, pydicom_defaults
from axiom_dagster.dicom.header_reader import CHARSET, PIXEL_DATA_TAGS, UNDEFINED, RawHeader, dictionary_vr
from axiom_dagster.store.records import LedgerRow

# Values not split on backslashes: binary numbers, and the single-string text VRs.
_WHOLE_VALUE = frozenset({"US", "UL", "SS", "SL", "FL", "FD", "LT", "ST", "UT"})
_FAST_VRS = frozenset(_FAST_TEXT | set(_FAST_NUMBERS) | {"PN"})
# Binary VRs whose JSON is their bytes in base64 (pydicom: no conversion, no VR change).
_INLINE_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW"})
_INLINE_MAX = (BULK_DATA_THRESHOLD // 4) * 3  # above: a bulk data marker (pydicom's rule)
_KEYS: dict[int, str] = {}


def _key(tag: int) -> str:
    key = _KEYS.get(tag)
    if key is None:
        key = _KEYS[tag] = f"{tag:08X}"
    return key


def skeleton(header: RawHeader) -> Dataset:
    """A pydicom Dataset of the header's raw elements, encoded as read (what dcmread holds)."""
    raw = {}
    implicit, little = header.implicit, header.little
    for tag, (vr, length, value, tell, _size) in header.elements.items():
        t = BaseTag(tag)
        raw[t] = RawDataElement(t, vr, length, value, tell, implicit, little)
    ds = Dataset(raw)
    ds.set_original_encoding(implicit, little, ds._character_set)
    return ds


@functools.lru_cache(maxsize=64)
def _charset_codec(value: bytes | None, implicit: bool, little: bool) -> str | None:
    """The codec the fast decoders use for a Specific Character Set value (dataset_codec of
    a data set pydicom read with it)."""
    header = RawHeader({CHARSET: (None if implicit else "CS", len(value), value, 0, len(value))} if value is not None else {},
                       "", implicit, little, 0)
    return dataset_codec(skeleton(header))


_PROVENANCE = dict(file_path=None, file_size=None, file_mtime=None, received_at=None, batch_id=None, run_id=None,
                   status="catalogued", destinations=None)


def fast_instance_row(header: RawHeader, ledger_row: LedgerRow | None = None, **provenance) -> dict[str, Any]:
    """The catalog row of the file `header` was read from: `instance_row` of the data set
    pydicom would read from it (provenance: see finish_row)."""
    if not pydicom_defaults():
        raise Fallback  # pydicom configured for other value types: its own reading throughout
    elements = header.elements
    charset = elements.get(CHARSET)
    if charset is not None and (charset[2] is None and charset[1]):
        raise Fallback
    codec = _charset_codec(charset[2] if charset is not None else None, header.implicit, header.little)
    warnings: list[str] = []
    # The JSON is written element by element; pydicom's dicts (`slow`) fill their places last,
    # after moving their bulk data out, in the order header_json does it.
    parts: list[str | None] = []
    slow: dict[str, dict] = {}
    slow_at: list[tuple[str, int]] = []
    bulk: list[dict] = []
    fast: dict[int, list] = {}
    pixel_length = None
    little, explicit = header.little, not header.implicit
    ds = None
    decoders, fast_vrs, whole_value, text_vrs, prefixes, quote = DECODERS, _FAST_VRS, _WHOLE_VALUE, _FAST_TEXT, _PREFIXES, _quote
    for tag, (vr, length, value, _tell, size) in elements.items():
        if vr is None:
            vr = dictionary_vr(tag)
        if value is None and length:  # never read: bulk data
            bulk.append({"path": _KEYS.get(tag) or _key(tag), "vr": vr.split(" ")[0], "length": size})
            if tag in PIXEL_DATA_TAGS:
                pixel_length = size
            continue
        if codec is not None:
            if vr in fast_vrs:
                data = value or b""
                try:
                    values = decoders[vr](data, little, codec) if data else []
                except Fallback:
                    pass
                else:
                    # Several values: only when none was empty (pydicom keeps empty ones).
                    if vr in whole_value or (len(values) <= 1 if 92 not in data else len(values) == data.count(92) + 1):
                        fast[tag] = values
                        if len(values) == 1 and vr in text_vrs:  # the common case, inline
                            prefix = prefixes.get((tag, vr)) or _prefix(tag, vr)
                            parts.append(prefix + ',"Value":[' + quote(values[0]) + "]}")
                            continue
                        text = _fragment(tag, vr, values)
                        if text is None:  # not finite: written (or left out) with pydicom's dicts
                            key = _KEYS.get(tag) or _key(tag)
                            slow[key] = _fast_json(vr, values)
                            slow_at.append((key, len(parts)))
                        parts.append(text)
                        continue
            elif vr in _INLINE_VRS and explicit and (value is None or len(value) <= _INLINE_MAX):
                prefix = _PREFIXES.get((tag, vr)) or _prefix(tag, vr)
                parts.append(f'{prefix},"InlineBinary":"{base64.b64encode(value).decode("ascii")}"}}' if value else prefix + "}")
                continue
        key = _KEYS.get(tag) or _key(tag)
        if vr == "SQ" and codec is not None:
            try:
                slow[key] = sequence_json(value or b"", length == UNDEFINED, header.implicit, little, codec)
            except Fallback:
                pass
            else:
                slow_at.append((key, len(parts)))
                parts.append(None)
                continue
        if ds is None:
            ds = skeleton(header)
        try:
            slow[key] = ds[tag].to_json_dict(_bulk_marker, BULK_DATA_THRESHOLD)
        except Exception as exc:  # one damaged element must not cost the row
            warnings.append(f"{_tag_name(tag)} left out of dicom_json: {type(exc).__name__}")
            continue
        slow_at.append((key, len(parts)))
        parts.append(None)
    if slow:
        _strip_nested_bulk(slow, "", bulk)
        for key, at in slow_at:
            if key in slow:
                try:
                    parts[at] = f'"{key}":{_dumps(slow[key])}'
                except ValueError:  # a non-finite number (FD NaN)
                    warnings.append(f"({key[:4]},{key[4:]}) left out of dicom_json: not a finite number")
    json_text = "{" + ",".join([p for p in parts if p is not None]) + "}"

    def element_value(tag: int):
        nonlocal ds
        if elements[tag][2] is None and elements[tag][1]:
            raise Fallback  # a typed column from a value left unread: pydicom reads it
        if ds is None:
            ds = skeleton(header)
        return ds[tag].value

    row = typed_values(elements, element_value, warnings, fast)
    row["dicom_json"], row["bulk_data"], row["pixel_data_length"] = json_text, bulk, pixel_length
    return finish_row(row, header.transfer_syntax or None, ledger_row, warnings=warnings, **{**_PROVENANCE, **provenance})


_PREFIXES: dict[tuple[int, str], str] = {}


def _prefix(tag: int, vr: str) -> str:
    prefix = _PREFIXES[(tag, vr)] = f'"{tag:08X}":{{"vr":"{vr}"'
    return prefix


def _is_number(v: str) -> int:
    return int(v) if v.isdigit() else int(float(v))  # as header_json's _fast_json


# Values -> JSON numbers, per VR (binary numbers are already Python numbers).
_NUMBERS = {"IS": lambda vs: list(map(_is_number, vs)), "DS": lambda vs: list(map(float, vs)),
            "US": list, "UL": list, "SS": list, "SL": list, "FL": list, "FD": list}


def _fragment(tag: int, vr: str, values: list) -> str | None:
    """One element's DICOM JSON text, as header_json's _fast_json + json.dumps write it
    (None: a number that is not finite)."""
    prefix = _PREFIXES.get((tag, vr)) or _prefix(tag, vr)
    if not values:
        return prefix + "}"
    if vr in _FAST_TEXT:
        if len(values) == 1:
            return prefix + ',"Value":[' + _quote(values[0]) + "]}"
        return prefix + ',"Value":[' + ",".join(map(_quote, values)) + "]}"
    if vr == "PN":
        entries = []
        for value in values:
            comps = value.split("=")
            entry = '{"Alphabetic":' + _quote(comps[0])
            if len(comps) > 1:
                entry += ',"Ideographic":' + _quote(comps[1])
            if len(comps) > 2:
                entry += ',"Phonetic":' + _quote(comps[2])
            entries.append(entry + "}")
        return prefix + ',"Value":[' + ",".join(entries) + "]}"
    numbers = _NUMBERS[vr](values)
    if _FAST_NUMBERS[vr] is float and not all(map(math.isfinite, numbers)):
        return None
    return prefix + ',"Value":[' + ",".join(map(repr, numbers)) + "]}"


_quote = json.encoder.encode_basestring  # JSON string literal, non-ASCII kept (ensure_ascii=False)
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode
