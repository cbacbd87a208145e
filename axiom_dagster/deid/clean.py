"""Clean (C) of text and dates for one instance: text keeps its wording minus any occurrence
of the patient's names, IDs, birth date and accession number (the "known identifiers"
reading of Clean); dates move by the keyed whole-day offset under Modified Dates."""
from __future__ import annotations

import re
from typing import TYPE_CHECKING

from pydicom import Dataset
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.datadict import tag_for_keyword
from pydicom.multival import MultiValue

from axiom_dagster.deid.values import CHARSET_VRS, TEXT_VRS, empty_element, shift_dates
from axiom_dagster.dicom import fastvalues

if TYPE_CHECKING:
    from axiom_dagster.deid.profile import DeidProfile

DATE_VRS = ("DA", "DT")
# Where Clean finds the identifiers to scrub from text (keyword, tag).
_SCRUB_SOURCES = tuple(
    (kw, tag_for_keyword(kw))
    for kw in ("PatientName", "PatientID", "OtherPatientIDs", "OtherPatientNames", "PatientBirthName",
               "PatientMotherBirthName", "AccessionNumber", "PatientBirthDate", "PatientAddress")
)


class Cleaner:
    """The per-instance state Clean needs; walk.Walk builds on it."""

    p: DeidProfile
    original_pid: str

    def __init__(self, profile: DeidProfile, ds: Dataset) -> None:
        self.p = profile
        self._top = ds
        self._scrub_re: re.Pattern[str] | None | bool = False  # False: not built yet
        self._offset: int | None = None
        self._codec: str | None | bool = False  # False: not looked up yet
        self._shift = profile.options.retain_long_modified_dates

    def offset_days(self) -> int:
        if self._offset is None:
            self._offset = self.p.uids.day_offset(self.original_pid, self.p.date_shift_max_days)
        return self._offset

    def scrub_re(self) -> re.Pattern[str] | None:
        if self._scrub_re is False:
            words: set[str] = set()
            for kw, tag in _SCRUB_SOURCES:
                values = self._raw_values(tag)  # as read: no conversion
                if values is None:
                    try:
                        elem = self._top.get(kw)
                    except Exception:
                        continue
                    if elem is None:
                        continue
                    values = elem if isinstance(elem, (list, MultiValue)) else [elem]
                for v in values:
                    for w in re.split(r"[\^=\s,]+", str(v)):
                        if len(w) >= 2:
                            words.add(w)
            self._scrub_re = (
                re.compile("|".join(re.escape(w) for w in sorted(words, key=len, reverse=True)), re.I)
                if words else None
            )
        return self._scrub_re  # type: ignore[return-value]

    def _raw_values(self, tag: int) -> list | None:
        """The values of a top-level element still as read, decoded as pydicom would
        (empty values left out); None: not a raw element, or a case for pydicom."""
        fv = fastvalues
        raw = self._top._dict.get(tag)
        if raw is None:
            return [] if fv.pydicom_defaults() else None
        if raw.__class__ is not RawDataElement or not fv.pydicom_defaults():
            return None
        try:
            return fv.raw_values(raw, self.codec())[0]
        except (fv.Fallback, ValueError):
            return None

    def codec(self) -> str | None:
        """The Python codec of the top-level dataset's text, when a plain one."""
        if self._codec is False:
            self._codec = fastvalues.dataset_codec(self._top)
        return self._codec  # type: ignore[return-value]

    def _raw_clean_text(self, ds: Dataset, raw, vr: str) -> bool:
        """Clean (C) of a text element as read: True when it provably stays unchanged.

        The scrub pattern is a case-insensitive alternation of literal words without
        backslashes, so if it finds nothing in the whole decoded value it finds nothing
        in any of pydicom's values (substrings of it): the slow path would change
        nothing. A match (or PN, which the slow path always rewrites) goes the slow way.
        """
        if vr == "PN" or not isinstance(raw, RawDataElement) or raw.value is None:
            return False
        data = raw.value
        if data.isascii():
            if 27 in data:  # ESC: ISO 2022 code extensions
                return False
            text = data.decode("ascii")
        else:
            codec = self.codec() if ds is self._top and vr in CHARSET_VRS else None
            if codec is None:
                return False
            try:
                text = data.decode(codec)
            except UnicodeDecodeError:
                return False
        rx = self.scrub_re()
        return rx is None or rx.search(text) is None

    def clean(self, ds: Dataset, elem: DataElement) -> None:
        vr = elem.VR
        tag = int(elem.tag)
        if vr in DATE_VRS:
            if self._shift:
                ds[tag] = DataElement(tag, vr, shift_dates(elem.value, vr, self.offset_days()))
            else:
                ds[tag] = empty_element(tag, vr)
            return
        if vr == "TM":
            return  # times of day do not move with a whole-day date shift
        if vr in TEXT_VRS:
            rx = self.scrub_re()
            if rx is None or elem.value in (None, ""):
                return
            value = elem.value
            if isinstance(value, (list, MultiValue)):
                new = [rx.sub("", str(v)) for v in value]
                if new != [str(v) for v in value] or not all(isinstance(v, str) for v in value):
                    ds[tag] = DataElement(tag, vr, new)
            else:
                new_value = rx.sub("", str(value))
                if new_value != value or type(value) is not str:
                    ds[tag] = DataElement(tag, vr, new_value)
            return
        # Other VRs (binary overlay data, curves, UN of unknown attributes) cannot be cleaned.
        del ds[tag]
