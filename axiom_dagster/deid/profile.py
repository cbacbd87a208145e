"""PS3.15 Basic Application Level Confidentiality Profile and its options.

`DeidProfile.apply(ds)` de-identifies a pydicom Dataset in place, following the whole of
Table E.1-1 (table_e1_1.py, generated from the edition in TABLE_EDITION) for every attribute
at the top level and, recursively, inside every sequence item (walk.py). Decisions the
standard leaves to the implementer:

- Combined codes: see options.resolve_code.
- D writes a dummy value valid for the attribute's VR that carries nothing of the original
  (values.py; UIDs are remapped, person names become the keyed pseudonym of the original);
  a D sequence becomes one empty item. Z writes an empty value (an empty sequence for SQ).
- C (clean): dates under Retain Longitudinal Temporal Information with Modified Dates are
  shifted by a keyed per-patient number of whole days, every DA and DT at any depth
  (listed in the table or not); times of day are therefore kept. Sequences are cleaned
  by applying the profile to their items; text keeps its wording minus any occurrence of
  the patient's names, IDs, birth date and accession number. This is the "known
  identifiers" reading of Clean; free text written by people can still hold other words.
- Attributes the table does not list are kept when the data dictionary knows them;
  unknown public attributes (any VR, UN included) are removed (walk.py).
- PatientID (Z) becomes a keyed pseudonym (`patient_id="hash"`, the default) and
  PatientName the same pseudonym, so one patient stays one patient across studies.
- Private attributes are removed unless Retain Safe Private is on; then only those of
  Table E.3.10-1 of the same edition (private.py) plus `extra_safe_private` remain.
- Patient Identity Removed (0012,0062) = YES, De-identification Method (0012,0063) and
  De-identification Method Code Sequence (0012,0064, CID 7050) are written, and
  Longitudinal Temporal Information Modified (0028,0303) when a dates option is used.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from pydicom import Dataset, Sequence
from pydicom.dataelem import DataElement
from pydicom.multival import MultiValue

from axiom_dagster.deid.options import CID_7050, DeidOptions, resolve_code
from axiom_dagster.deid.private import SAFE_PRIVATE
from axiom_dagster.deid.table_e1_1 import TABLE, TABLE_EDITION, lookup
from axiom_dagster.deid.uidmap import UIDMapper
from axiom_dagster.deid.values import shift_dates
from axiom_dagster.deid.walk import Walk

# File Meta Information elements that name systems or carry private information.
_META_REMOVE = (0x00020016, 0x00020017, 0x00020018, 0x00020100, 0x00020102)


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
        Walk(self, ds).dataset(ds)
        self._mark(ds)
        meta = getattr(ds, "file_meta", None)
        if meta is not None:
            if "MediaStorageSOPInstanceUID" in meta and not self.options.retain_uids:
                meta.MediaStorageSOPInstanceUID = self.uids.remap(str(meta.MediaStorageSOPInstanceUID))
            for tag in _META_REMOVE:
                if tag in meta._dict:
                    del meta[tag]

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


__all__ = ["CID_7050", "DeidOptions", "DeidProfile", "SAFE_PRIVATE", "TABLE_EDITION", "resolve_code", "shift_dates"]
