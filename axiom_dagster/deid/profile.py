"""PS3.15 Basic Application Level Confidentiality Profile and its options.

`DeidProfile.apply(ds)` de-identifies a pydicom Dataset in place, following Table E.1-1
(table_e1_1.py) for every attribute at the top level and, recursively, inside every
sequence item. Decisions the standard leaves to the implementer:

- Combined codes need the attribute's Type in the IOD, which a header-level tool does not
  know. Z/D resolves to Z, X/Z, X/D and X/Z/D to X (remove), except for the attributes in
  `REQUIRED_TYPE` (D if Type 1, Z if Type 2). X/Z/U* resolves to U* by default
  (keep the sequence, replace every contained UID: referential integrity survives); set
  `keep_references=False` for X.
- D writes a dummy value of the attribute's VR (see `_dummy`); a D sequence becomes one
  empty item. Z writes an empty value (an empty sequence for SQ).
- C (clean): dates under Retain Longitudinal Temporal Information with Modified Dates are
  shifted by a keyed per-patient number of days; times are kept; sequences are cleaned by
  applying the profile to their items; text (descriptors, patient characteristics) keeps
  its wording minus any occurrence of the patient's names, IDs, birth date and accession
  number. This is the "known identifiers" reading of Clean; free text written by people
  can still hold other identifying words.
- PatientID (Z) becomes a keyed pseudonym (`patient_id="hash"`, the default) and
  PatientName the same pseudonym, so one patient stays one patient across studies.
- Private attributes are removed unless Retain Safe Private is on; then only those in
  `SAFE_PRIVATE` (a small subset of PS3.15 Table E.3.10-1) plus `extra_safe_private`
  remain, with their Private Creator elements.
- Patient Identity Removed (0012,0062) = YES, De-identification Method (0012,0063) and
  De-identification Method Code Sequence (0012,0064, CID 7050) are written, and
  Longitudinal Temporal Information Modified (0028,0303) when a dates option is used.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, timedelta

from pydicom import Dataset, Sequence
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.multival import MultiValue

from axiom_dagster.dicom import fastvalues
from axiom_dagster.deid.table_e1_1 import TABLE_EDITION, TableRow, lookup
from axiom_dagster.deid.uidmap import UIDMapper

# CID 7050 De-identification Method codes (coding scheme DCM).
CID_7050 = {
    "basic": ("113100", "Basic Application Confidentiality Profile"),
    "clean_pixel_data": ("113101", "Clean Pixel Data Option"),
    "clean_recognizable_visual_features": ("113102", "Clean Recognizable Visual Features Option"),
    "clean_graphics": ("113103", "Clean Graphics Option"),
    "clean_structured_content": ("113104", "Clean Structured Content Option"),
    "clean_descriptors": ("113105", "Clean Descriptors Option"),
    "retain_long_full_dates": ("113106", "Retain Longitudinal Temporal Information Full Dates Option"),
    "retain_long_modified_dates": ("113107", "Retain Longitudinal Temporal Information Modified Dates Option"),
    "retain_patient_characteristics": ("113108", "Retain Patient Characteristics Option"),
    "retain_device_identity": ("113109", "Retain Device Identity Option"),
    "retain_uids": ("113110", "Retain UIDs Option"),
    "retain_safe_private": ("113111", "Retain Safe Private Option"),
    "retain_institution_identity": ("113112", "Retain Institution Identity Option"),
}

# Safe private attributes kept under Retain Safe Private: (private creator, group,
# element offset within the block). A small subset of PS3.15 Table E.3.10-1 (diffusion
# b-values and directions) that research pipelines need; extend per profile.
SAFE_PRIVATE: frozenset[tuple[str, int, int]] = frozenset(
    {
        ("SIEMENS MR HEADER", 0x0019, 0x0C),  # B_value
        ("SIEMENS MR HEADER", 0x0019, 0x0D),  # DiffusionDirectionality
        ("SIEMENS MR HEADER", 0x0019, 0x0E),  # DiffusionGradientDirection
        ("SIEMENS MR HEADER", 0x0019, 0x27),  # B_matrix
        ("GEMS_PARM_01", 0x0043, 0x39),  # slop_int_6..9 (b-value)
        ("Philips Imaging DD 001", 0x2001, 0x03),  # Diffusion B-Factor
    }
)

# Type of an attribute in common composite IODs, where a combined code needs it.
REQUIRED_TYPE: dict[int, str] = {
    0x00080023: "2",  # Content Date (General Image: Type 2C)
    0x00080033: "2",  # Content Time
    0x00700084: "2",  # Content Creator's Name (Presentation State: Type 2)
}

_OPTION_ORDER = (
    "retain_safe_private",
    "retain_uids",
    "retain_device_identity",
    "retain_institution_identity",
    "retain_patient_characteristics",
    "retain_long_full_dates",
    "retain_long_modified_dates",
    "clean_descriptors",
    "clean_structured_content",
    "clean_graphics",
)
# When several enabled options name an attribute, the most retaining code wins.
_RANK = {"K": 3, "C": 2}

_PATIENT_ID = 0x00100020
_PATIENT_NAME = 0x00100010
_TEXT_VRS = {"LO", "SH", "ST", "LT", "UT", "UC", "PN", "CS", "AE", "AS"}


@dataclass(frozen=True)
class DeidOptions:
    retain_safe_private: bool = False
    retain_uids: bool = False
    retain_device_identity: bool = False
    retain_institution_identity: bool = False
    retain_patient_characteristics: bool = False
    retain_long_full_dates: bool = False
    retain_long_modified_dates: bool = False
    clean_descriptors: bool = False
    clean_structured_content: bool = False
    clean_graphics: bool = False

    def enabled(self) -> list[str]:
        return [name for name in _OPTION_ORDER if getattr(self, name)]


def resolve_code(row: TableRow, options: DeidOptions, keep_references: bool = True) -> str:
    """The single action (X, Z, D, K, C, U, U*) for a table row under the given options."""
    code = row.basic
    best = None
    for name in options.enabled():
        opt = row.options.get(name)
        if opt is not None and (best is None or _RANK.get(opt, 1) > _RANK.get(best, 1)):
            best = opt
    if best is not None:
        code = best
    if "/" not in code:
        return code
    required = REQUIRED_TYPE.get(row.tag or -1)
    parts = code.split("/")
    if "U*" in parts:
        if keep_references:
            return "U*"
        return "Z" if required == "2" else "X"
    if required == "1" and "D" in parts:
        return "D"
    if required == "2" and "Z" in parts:
        return "Z"
    return parts[0]


def _dummy(vr: str):
    if vr in ("DA",):
        return "19000101"
    if vr == "DT":
        return "19000101000000"
    if vr == "TM":
        return "000000"
    if vr in ("DS", "IS"):
        return "0"
    if vr in ("US", "UL", "SS", "SL", "FL", "FD", "SV", "UV"):
        return 0
    if vr in ("OB", "OW", "OD", "OF", "OL", "OV", "UN"):
        return b"\x00\x00"
    if vr == "AS":
        return "000Y"
    if vr in ("CS", "AE"):
        return "ANON"
    if vr == "UR":
        return "urn:none"
    return "ANONYMIZED"


@dataclass
class DeidProfile:
    """A compiled profile: Table E.1-1 resolved once for the chosen options."""

    name: str
    options: DeidOptions
    uids: UIDMapper
    patient_id: str = "hash"  # "hash" (keyed pseudonym) or "empty"
    pseudonym_prefix: str = "ANON-"
    date_shift_max_days: int = 365
    keep_references: bool = True
    extra_safe_private: frozenset[tuple[str, int, int]] = frozenset()
    modifying_system: str = "AXIOM"
    keep: frozenset[int] = frozenset()  # tags the user chose to keep (config `keep`)
    _codes: dict[int, str] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        from axiom_dagster.deid.table_e1_1 import TABLE

        self._codes = {tag: resolve_code(row, self.options, self.keep_references) for tag, row in TABLE.items()}
        for tag in self.keep:
            self._codes[tag] = "K"
        self._safe = SAFE_PRIVATE | self.extra_safe_private

    def __getstate__(self):
        state = self.__dict__.copy()
        state.pop("_codes", None)
        state.pop("_marks", None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self.__post_init__()

    # -- public -----------------------------------------------------------------------
    def code_for(self, tag: int) -> str | None:
        code = self._codes.get(tag)
        if code is None:
            row = lookup(tag)  # repeating groups such as Overlay Data (60xx,3000)
            if row is not None:
                return resolve_code(row, self.options, self.keep_references)
        return code

    def apply(self, ds: Dataset) -> None:
        """De-identify `ds` in place."""
        run = _Run(self, ds)
        run.dataset(ds)
        self._mark(ds)
        meta = getattr(ds, "file_meta", None)
        if meta is not None:
            if "MediaStorageSOPInstanceUID" in meta and not self.options.retain_uids:
                meta.MediaStorageSOPInstanceUID = self.uids.remap(str(meta.MediaStorageSOPInstanceUID))
            if "SourceApplicationEntityTitle" in meta:
                del meta.SourceApplicationEntityTitle

    # -- marking (PS3.15 E.1.1 item 6) -----------------------------------------------
    def _mark(self, ds: Dataset) -> None:
        marks = self.__dict__.get("_marks")
        if marks is None:
            marks = self.__dict__["_marks"] = self._build_marks()
        for tag, vr, value in marks:
            if vr == "SQ":
                items = []
                for template in value:
                    item = Dataset()
                    for t, v, val in template:
                        item._dict[t] = DataElement(t, v, val, already_converted=True)
                    items.append(item)
                ds[tag] = DataElement(tag, vr, Sequence(items), already_converted=True)
            elif isinstance(value, MultiValue):
                ds[tag] = DataElement(tag, vr, MultiValue(type(value[0]), list(value)), already_converted=True)
            else:
                ds[tag] = DataElement(tag, vr, value, already_converted=True)

    def _build_marks(self) -> list:
        """The marking elements, built once per profile as (tag, VR, converted value)."""
        ds = Dataset()
        ds.PatientIdentityRemoved = "YES"
        keys = ["basic", *self.options.enabled()]
        items = []
        for key in keys:
            value, meaning = CID_7050[key]
            item = Dataset()
            item.CodeValue = value
            item.CodingSchemeDesignator = "DCM"
            item.CodeMeaning = meaning
            items.append(item)
        ds.DeidentificationMethodCodeSequence = Sequence(items)
        # LO is limited to 64 characters per value: one value per profile/option.
        ds.DeidentificationMethod = [f"{self.modifying_system} PS3.15 Basic Profile"] + [
            CID_7050[k][1][:64] for k in keys[1:]
        ]
        if self.options.retain_long_full_dates:
            ds.LongitudinalTemporalInformationModified = "UNMODIFIED"
        elif self.options.retain_long_modified_dates:
            ds.LongitudinalTemporalInformationModified = "MODIFIED"
        marks = []
        for tag, elem in ds._dict.items():
            value = elem.value
            if elem.VR == "SQ":
                value = [[(t, e.VR, e.value) for t, e in item._dict.items()] for item in value]
            marks.append((tag, elem.VR, value))
        return marks


class _Run:
    """State for one instance: the date offset and identifiers to scrub are per patient."""

    def __init__(self, profile: DeidProfile, ds: Dataset) -> None:
        self.p = profile
        pid = ds.get(_PATIENT_ID)
        self.original_pid = str(pid.value) if pid is not None and pid.value is not None else ""
        self._scrub_re: re.Pattern[str] | None | bool = False  # False: not built yet
        self._top = ds
        self._offset: int | None = None
        self._codec: str | None | bool = False  # False: not looked up yet

    # -- helpers ----------------------------------------------------------------------
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
                    elem = self._top.get(kw)
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

    # -- traversal --------------------------------------------------------------------
    # One pass over the container's elements (not over the table). Elements that are
    # deleted, blanked or kept are never converted from their raw (as read) form; UIDs
    # and dates that change are re-encoded as raw elements of the same encoding, which
    # pydicom converts on access exactly as it would have converted the value read from
    # the file. Anything unusual (deferred values, non-string values) takes the
    # DataElement path.
    def dataset(self, ds: Dataset) -> None:
        p = self.p
        codes = p._codes
        d = ds._dict
        private_keep: set[int] | None = None
        private_deleted = False
        for tag, elem in list(d.items()):
            group = tag >> 16
            if group & 1:
                if private_keep is None:
                    private_keep = self._safe_private_tags(ds) if p.options.retain_safe_private else set()
                if tag not in private_keep:
                    del d[tag]
                    private_deleted = True
                continue
            code = codes.get(tag)
            if code is None and 0x5000 <= group <= 0x60FF:
                code = p.code_for(tag)
            if code is None or code == "K":
                # Not in the table, or kept: keep, but clean inside sequences.
                if _is_sequence(ds, tag):
                    for item in ds[tag].value:
                        self.dataset(item)
                continue
            if code == "X":
                if tag in _PIXEL_TAGS:
                    del ds[tag]
                else:
                    del d[tag]
            elif code == "U*":
                for item in ds[tag].value:
                    self.dataset(item)
            else:
                self.element(ds, tag, code, elem)
        if private_deleted and ds._private_blocks:
            ds._private_blocks = {}

    def element(self, ds: Dataset, tag: int, code: str, raw=None) -> None:
        if raw is None:
            raw = ds._dict[tag]
        vr = _raw_vr(raw)
        if vr is not None and vr != "SQ" and code in ("U", "Z", "C"):
            if self._raw_element(ds, tag, code, raw, vr):
                return
        elem = ds[tag]
        vr = elem.VR
        if vr == "SQ":
            if code == "Z":
                elem.value = Sequence()
            elif code == "D":
                elem.value = Sequence([Dataset()])
            else:  # C, U: clean the items
                for item in elem.value:
                    self.dataset(item)
            return
        if code == "U":
            if elem.VM:
                value = elem.value
                if isinstance(value, (list, MultiValue)):
                    ds[tag] = DataElement(tag, vr, [self.p.uids.remap(str(v)) for v in value])
                else:
                    ds[tag] = DataElement(tag, vr, self.p.uids.remap(str(value)))
            return
        if code == "Z":
            if tag == _PATIENT_ID and self.p.patient_id == "hash":
                ds[tag] = DataElement(tag, vr, self.p.uids.pseudonym(self.original_pid, prefix=self.p.pseudonym_prefix))
            elif tag == _PATIENT_NAME and self.p.patient_id == "hash":
                ds[tag] = DataElement(tag, vr, self.p.uids.pseudonym(self.original_pid, prefix=self.p.pseudonym_prefix))
            else:
                ds[tag] = _empty_element(tag, vr)
            return
        if code == "D":
            ds[tag] = DataElement(tag, vr, self.p.uids.remap("dummy") if vr == "UI" else _dummy(vr))
            return
        if code == "C":
            self.clean(ds, elem)
            return
        raise ValueError(f"unknown de-identification action {code!r} for {elem.tag}")

    def _raw_element(self, ds: Dataset, tag: int, code: str, raw, vr: str) -> bool:
        """The fast path for U, Z and C on an element as read; False: not handled."""
        d = ds._dict
        if code == "Z":
            if tag in (_PATIENT_ID, _PATIENT_NAME) and self.p.patient_id == "hash":
                return False
            if vr == "UN":
                return False
            d[tag] = _empty_element(tag, vr)
            return True
        if code == "C" and vr in _TEXT_VRS:
            return self._raw_clean_text(ds, raw, vr)
        if not isinstance(raw, RawDataElement) or raw.value is None or vr not in _ASCII_VRS:
            return False
        data = raw.value
        if code == "U":
            if vr != "UI":
                return False
            if not data.strip(b"\x00 "):
                return True  # VM 0: unchanged, as before
            if not data.isascii():
                return False
            remap = self.p.uids.remap
            out = "\\".join([remap(v) for v in data.decode("ascii").rstrip("\x00 ").split("\\")])
            d[tag] = _raw_text(raw, out, b"\x00")
            return True
        # C
        if vr in ("DA", "DT"):
            if not self.p.options.retain_long_modified_dates:
                d[tag] = _empty_element(tag, vr)
                return True
            if not data or not data.isascii():
                return False  # empty: the slow path keeps the value as it is
            # As pydicom reads it: trailing padding removed, then split into values.
            parts = data.decode("ascii").rstrip(" \x00").split("\\")
            days = self.offset_days()
            shifted_parts = [shift_dates(v, vr, days) for v in parts]
            if any(not isinstance(v, str) or v != v.rstrip(" \x00") for v in shifted_parts):
                return False
            shifted = "\\".join(shifted_parts)
            d[tag] = _raw_text(raw, shifted, b" ")
            return True
        if vr == "TM":
            return True  # times of day do not move with the date shift
        return False

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
            codec = self.codec() if ds is self._top and vr in _CHARSET_VRS else None
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
        if vr in ("DA", "DT"):
            if self.p.options.retain_long_modified_dates:
                ds[tag] = DataElement(tag, vr, shift_dates(elem.value, vr, self.offset_days()))
            else:
                ds[tag] = _empty_element(tag, vr)
            return
        if vr == "TM":
            return  # times of day do not move with the date shift
        if vr in _TEXT_VRS:
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
        # Other VRs (binary overlay data, curves...) cannot be cleaned: remove.
        del ds[tag]

    def _safe_private_tags(self, ds: Dataset) -> set[int]:
        keep: set[int] = set()
        safe = self.p._safe
        groups = {int(t) >> 16 for t in ds.keys() if (int(t) >> 16) & 1}
        for group in groups:
            for block in range(0x10, 0x100):
                creator_tag = (group << 16) | block
                if creator_tag not in ds._dict:
                    continue
                creator = str(ds[creator_tag].value).strip()
                kept_any = False
                for (c, g, offset) in safe:
                    if c == creator and g == group:
                        t = (group << 16) | (block << 8) | offset
                        if t in ds._dict:
                            keep.add(t)
                            kept_any = True
                if kept_any:
                    keep.add(creator_tag)
        return keep


# Where Clean finds the identifiers to scrub from text (keyword, tag).
_SCRUB_SOURCES = tuple(
    (kw, tag_for_keyword(kw))
    for kw in ("PatientName", "PatientID", "OtherPatientIDs", "OtherPatientNames", "PatientBirthName",
               "PatientMotherBirthName", "AccessionNumber", "PatientBirthDate", "PatientAddress")
)
# VRs whose text pydicom decodes with the Specific Character Set.
_CHARSET_VRS = frozenset({"LO", "SH", "UC", "LT", "ST", "UT", "PN"})


_PIXEL_TAGS = frozenset({0x7FE00008, 0x7FE00009, 0x7FE00010})
# VRs whose values pydicom decodes as ASCII whatever the character set.
_ASCII_VRS = frozenset({"AE", "AS", "CS", "DA", "DS", "DT", "IS", "TM", "UI"})


def _raw_vr(elem) -> str | None:
    """The VR pydicom would give `elem` on conversion, when it is plain; else None."""
    vr = elem.VR
    if vr is None:  # implicit VR raw element
        try:
            vr = dictionary_VR(elem.tag)
        except KeyError:
            return None
    if vr == "UN" or " or " in vr:
        return None  # pydicom may replace UN or resolve the ambiguity on conversion
    return vr


def _empty_element(tag: int, vr: str) -> DataElement:
    """DataElement(tag, vr, None) (b"" for OB/OW/UN) without the setter's validation."""
    return DataElement(tag, vr, b"" if vr in ("OB", "OW", "UN") else None, already_converted=True)


def _raw_text(raw: RawDataElement, text: str, pad: bytes) -> RawDataElement:
    """A raw element like `raw` holding ASCII `text`, padded to an even length."""
    data = text.encode("ascii")
    if len(data) & 1:
        data += pad
    return RawDataElement(raw.tag, raw.VR, len(data), data, raw.value_tell, raw.is_implicit_VR,
                          raw.is_little_endian, raw.is_raw, raw.is_buffered)


def _is_sequence(ds: Dataset, tag: int) -> bool:
    vr = ds._dict[tag].VR
    if vr is None:  # implicit VR raw element: ask the dictionary, not the value
        try:
            vr = dictionary_VR(tag)
        except KeyError:
            return False
    return vr == "SQ"


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


__all__ = ["CID_7050", "DeidOptions", "DeidProfile", "SAFE_PRIVATE", "TABLE_EDITION", "resolve_code", "shift_dates"]
