"""Typed column values from DICOM values: from pydicom's values (`CONVERTERS`) and from the
lists the raw decoders give (`LIST_CONVERTERS`: same results, without pydicom's value
classes in the common cases). A value that cannot be converted raises; the caller turns
that into NULL and a warning that names the exception type, so both sets must raise the
same types.
"""
from __future__ import annotations

import math
from datetime import date, datetime, time
from typing import Any, Callable

from pydicom import config
from pydicom.multival import MultiValue
from pydicom.valuerep import DA, DT, IS, TM


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


# From the raw decoders' lists: str for text VRs (IS and DS as their text), int or float
# for binary numbers; never an empty string.
def _one(values: list):
    if len(values) > 1:
        raise ValueError(f"{len(values)} values in a single-valued column")
    return values[0] if values else None


def _text_list(values: list) -> str | None:
    return "\\".join(map(str, values)) if values else None


def _texts_list(values: list) -> list[str] | None:
    return [str(v) for v in values] if values else None


def _int_list(values: list) -> int | None:
    v = _one(values)
    if v is None:
        return None
    if isinstance(v, str) and not v.isdigit():
        v = IS(v, validation_mode=config.IGNORE)  # "+5", "1.0": pydicom's reading
    return int(v)


def _float_list(values: list) -> float | None:
    v = _one(values)
    return None if v is None else _finite(v)


def _floats_list(values: list) -> list[float] | None:
    return [_finite(v) for v in values] if values else None


def _date_list(values: list) -> date | None:
    v = _one(values)
    if isinstance(v, str) and len(v) == 8 and v.isdigit():  # YYYYMMDD
        try:
            return date(int(v[:4]), int(v[4:6]), int(v[6:]))
        except ValueError:
            pass  # pydicom's DA decides
    return _date(values)


def _time_list(values: list) -> time | None:
    v = _one(values)
    if isinstance(v, str) and len(v) == 6 and v.isdigit():  # HHMMSS
        try:
            return time(int(v[:2]), int(v[2:4]), int(v[4:]))
        except ValueError:
            pass  # pydicom's TM decides (a leap second, ...)
    return _time(values)


LIST_CONVERTERS: dict[str, Callable[[list], Any]] = {
    "text": _text_list, "texts": _texts_list, "int": _int_list, "float": _float_list, "floats": _floats_list,
    "date": _date_list, "time": _time_list, "datetime": _datetime,
}
