"""Value normalisation for condition operators: DA/TM/DT and numbers compared as such
(see conditions.py for the comparison semantics), and the ordered-comparison table."""
from __future__ import annotations

import operator
import re
from datetime import date, datetime, time, timedelta, timezone
from typing import Any

_NUMERIC_VRS = {"IS", "DS", "US", "UL", "SS", "SL", "FL", "FD", "SV", "UV", "OF", "OD"}
_DT_RE = re.compile(
    r"^(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(?:\.(\d{1,6}))?([+-]\d{4})?$"
)


def _norm_da(v: Any) -> str | None:
    if isinstance(v, datetime):
        return v.strftime("%Y%m%d")
    if isinstance(v, date):
        return v.strftime("%Y%m%d")
    s = str(v).strip().replace("-", "").replace(".", "")
    return s if len(s) == 8 and s.isdigit() else None


def _norm_tm(v: Any) -> str | None:
    if v.__class__ is str:  # the common case
        s = v.strip().replace(":", "")
    elif isinstance(v, time):
        return v.strftime("%H%M%S.%f")
    else:
        s = str(v).strip().replace(":", "")
    main, _, frac = s.partition(".")
    if not main.isdigit() or len(main) not in (2, 4, 6) or (frac and not frac.isdigit()):
        return None
    return main.ljust(6, "0") + "." + frac.ljust(6, "0")[:6]


def _norm_dt(v: Any) -> datetime | None:
    if isinstance(v, datetime):
        return v.astimezone(timezone.utc).replace(tzinfo=None) if v.tzinfo else v
    if isinstance(v, date):
        return datetime(v.year, v.month, v.day)
    s = str(v).strip().replace("-", "", 2) if str(v).count("-") >= 2 else str(v).strip()
    s = s.replace(":", "").replace("T", "").replace(" ", "")
    m = _DT_RE.match(s)
    if not m:
        return None
    y, mo, d, h, mi, sec, frac, off = m.groups()
    try:
        dt = datetime(int(y), int(mo or 1), int(d or 1), int(h or 0), int(mi or 0), int(sec or 0),
                      int((frac or "0").ljust(6, "0")))
    except ValueError:
        return None
    if off:
        sign = 1 if off[0] == "+" else -1
        dt -= sign * timedelta(hours=int(off[1:3]), minutes=int(off[3:5]))
    return dt


def _to_float(v: Any) -> float | None:
    if v.__class__ is str:  # the common case (float() strips whitespace as str.strip() does)
        try:
            return float(v)
        except ValueError:
            return None
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return float(v)
    try:
        return float(str(v).strip())
    except ValueError:
        return None


def normaliser(vr: str | None):
    if vr == "DA":
        return _norm_da
    if vr == "TM":
        return _norm_tm
    if vr == "DT":
        return _norm_dt
    if vr in _NUMERIC_VRS:
        return _to_float
    return None


_ORDER = {"gt": operator.gt, "lt": operator.lt, "ge": operator.ge, "le": operator.le}


def _same(s: str) -> str:
    return s


def _plain_target(v: Any) -> str:
    if isinstance(v, datetime):
        return v.strftime("%Y%m%d%H%M%S")
    if isinstance(v, date):
        return v.strftime("%Y%m%d")
    return str(v)
