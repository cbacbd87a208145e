"""Element values for de-identification: dummy (D) values per VR, date shifting, and small
helpers to build elements without pydicom's value validation."""
from __future__ import annotations

from datetime import date, timedelta

from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.multival import MultiValue

# VRs whose values pydicom decodes as ASCII whatever the character set.
ASCII_VRS = frozenset({"AE", "AS", "CS", "DA", "DS", "DT", "IS", "TM", "UI"})
# VRs whose text pydicom decodes with the Specific Character Set.
CHARSET_VRS = frozenset({"LO", "SH", "UC", "LT", "ST", "UT", "PN"})
TEXT_VRS = frozenset({"LO", "SH", "ST", "LT", "UT", "UC", "PN", "CS", "AE", "AS"})
PIXEL_TAGS = frozenset({0x7FE00008, 0x7FE00009, 0x7FE00010})

# Dummy values that are valid for their VR (length, character repertoire, value format)
# and carry nothing of the original. UI and PN dummies are keyed (see DeidProfile.dummy).
_FIXED_DUMMIES: dict[str, object] = {
    "AE": "ANONYMOUS", "AS": "000Y", "CS": "ANONYMIZED", "DA": "19000101", "DS": "0",
    "DT": "19000101000000", "IS": "0", "LO": "ANONYMIZED", "LT": "ANONYMIZED", "SH": "ANONYMIZED",
    "ST": "ANONYMIZED", "TM": "000000", "UC": "ANONYMIZED", "UR": "urn:none", "UT": "ANONYMIZED",
    "AT": 0, "FD": 0.0, "FL": 0.0, "SL": 0, "SS": 0, "SV": 0, "UL": 0, "US": 0, "UV": 0,
    # Binary: 8 zero bytes are a whole number of values for every OB/OD/OF/OL/OV/OW.
    "OB": b"\x00" * 8, "OD": b"\x00" * 8, "OF": b"\x00" * 8, "OL": b"\x00" * 8, "OV": b"\x00" * 8,
    "OW": b"\x00" * 8,
}


def fixed_dummy(vr: str):
    """The dummy value of `vr` (first of alternatives such as "US or SS"); None: no valid
    dummy without knowing the VR (UN of an attribute the dictionary does not know)."""
    return _FIXED_DUMMIES.get(vr.split(" or ")[0])


DICT_VR_CACHE: dict[int, str | None] = {}


def dictionary_vr(tag: int) -> str | None:
    """The data dictionary's VR of a public tag (repeating groups included); None: unknown."""
    try:
        return DICT_VR_CACHE[tag]
    except KeyError:
        pass
    try:
        vr: str | None = dictionary_VR(tag)
    except KeyError:
        vr = None
    if len(DICT_VR_CACHE) < 50_000:  # unknown tags from odd files must not grow it without bound
        DICT_VR_CACHE[tag] = vr
    return vr


def raw_vr(elem) -> str | None:
    """The VR pydicom would give `elem` on conversion, when it is plain; else None."""
    vr = elem.VR
    if vr is None:  # implicit VR raw element
        vr = dictionary_vr(elem.tag)
        if vr is None:
            return None
    if vr == "UN" or " or " in vr:
        return None  # pydicom may replace UN or resolve the ambiguity on conversion
    return vr


def empty_element(tag: int, vr: str) -> DataElement:
    """DataElement(tag, vr, None) (b"" for binary VRs) without the setter's validation."""
    return DataElement(tag, vr, b"" if vr[0] == "O" or vr == "UN" else None, already_converted=True)


def raw_text(raw: RawDataElement, text: str, pad: bytes) -> RawDataElement:
    """A raw element like `raw` holding ASCII `text`, padded to an even length."""
    data = text.encode("ascii")
    if len(data) & 1:
        data += pad
    return RawDataElement(raw.tag, raw.VR, len(data), data, raw.value_tell, raw.is_implicit_VR,
                          raw.is_little_endian, raw.is_raw, raw.is_buffered)


def shift_dates(value, vr: str, days: int):
    """Shift DA or DT value(s) by `days`; unparsable values become empty."""
    if isinstance(value, (list, MultiValue)):
        return [shift_dates(v, vr, days) for v in value]
    text = str(value or "").strip()
    if len(text) < 8 or not text[:8].isdigit():
        return "" if text else value
    try:
        d = date(int(text[:4]), int(text[4:6]), int(text[6:8])) + timedelta(days=days)
    except ValueError:
        return ""
    return d.strftime("%Y%m%d") + (text[8:] if vr == "DT" else "")
