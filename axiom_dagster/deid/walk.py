"""One de-identification pass over an instance: every element at the top level and, recursively,
inside every sequence item, in one pass over each container's elements (not over the table).

What the table does not list is kept only when it can be judged: an attribute the data
dictionary does not know (whatever its VR, UN included) is removed, and an attribute whose
dictionary VR is SQ is opened as a sequence whatever VR it arrived with (UN after an
implicit-VR hop); one that cannot be parsed is removed. Private attributes: private.py.

Elements that are deleted, blanked or kept are never converted from their raw (as read) form;
UIDs and dates that change are re-encoded as raw elements of the same encoding, which pydicom
converts on access exactly as it would have converted the value read from the file. Anything
unusual (deferred values, non-string values, UN) takes the DataElement path.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from pydicom import Dataset, Sequence
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.multival import MultiValue
from pydicom.values import convert_SQ

from axiom_dagster.deid.clean import DATE_VRS, Cleaner
from axiom_dagster.deid.private import SAFE_PRIVATE_VR, safe_private_tags
from axiom_dagster.deid.values import (
    ASCII_VRS, DICT_VR_CACHE, PIXEL_TAGS, TEXT_VRS, dictionary_vr, empty_element, fixed_dummy, raw_text, raw_vr,
    shift_dates,
)

if TYPE_CHECKING:
    from axiom_dagster.deid.profile import DeidProfile

_PATIENT_ID = 0x00100020
_PATIENT_NAME = 0x00100010
_UNSEEN = object()


class Walk(Cleaner):
    """State for one instance: the date offset and identifiers to scrub are per patient."""

    def __init__(self, profile: DeidProfile, ds: Dataset) -> None:
        super().__init__(profile, ds)
        pid = ds.get(_PATIENT_ID)
        try:
            self.original_pid = str(pid.value) if pid is not None and pid.value is not None else ""
        except Exception:  # an undecodable Patient ID still gets a (constant) pseudonym
            self.original_pid = ""

    # -- traversal --------------------------------------------------------------------
    def dataset(self, ds: Dataset) -> None:
        p = self.p
        codes = p._codes
        d = ds._dict
        dict_vr = DICT_VR_CACHE.get
        shift = self._shift
        private_seen = False
        for tag, elem in list(d.items()):
            tag = tag.real  # a plain int: dict lookups skip BaseTag.__eq__
            group = tag >> 16
            if group & 1:
                private_seen = True
                continue
            code = codes.get(tag)
            if code is None and 0x5000 <= group <= 0x60FF:
                code = p.code_for(tag)  # repeating groups: curves and overlays
            if code is None:  # not listed: kept if the dictionary knows it (inlined: hot path)
                vr = dict_vr(tag, _UNSEEN)
                if vr is _UNSEEN:
                    vr = dictionary_vr(tag)
                if vr is None:
                    del d[tag]  # unknown public attribute (any VR, UN too): cannot be judged safe
                elif vr == "SQ":
                    self.items(ds, tag)
                elif shift and (vr == "DA" or vr == "DT"):
                    self.element(ds, tag, "C", elem)  # the date shift moves every date
            elif code == "K":
                if elem.VR == "SQ" or dictionary_vr(tag) == "SQ":
                    self.items(ds, tag, delete_unparsable=False)
            elif code == "X":
                if tag in PIXEL_TAGS:
                    del ds[tag]
                else:
                    del d[tag]
            elif code == "U*":
                self.items(ds, tag)
            else:
                self.element(ds, tag, code, elem)
        if private_seen:
            self.private(ds)

    def items(self, ds: Dataset, tag: int, delete_unparsable: bool = True) -> None:
        """De-identify the items of a sequence, parsing one that arrived as UN or implicit."""
        seq = self.sequence(ds, tag)
        if seq is None:
            if delete_unparsable:
                del ds._dict[tag]
            return
        for item in seq:
            self.dataset(item)

    @staticmethod
    def sequence(ds: Dataset, tag: int) -> Sequence | None:
        """The items of a sequence element; None when it cannot be parsed as one."""
        elem = ds._dict[tag]
        if elem.__class__ is DataElement and elem.VR == "SQ":
            return elem.value
        if elem.VR == "UN" and isinstance(elem.value, bytes):  # as read, or left UN by pydicom
            # PS3.5 6.2.2: a sequence stored as UN holds Implicit VR Little Endian items,
            # whatever the transfer syntax (pydicom would read big endian ones, or leave
            # values of 64 KiB and more as bytes).
            try:
                seq = convert_SQ(elem.value, True, True, ds._character_set)
            except Exception:
                return None
            ds[tag] = DataElement(tag, "SQ", seq)
            return ds[tag].value
        try:
            elem = ds[tag]  # pydicom parses implicit VR sequences by the dictionary
        except Exception:
            return None
        value = elem.value
        return value if elem.VR == "SQ" and isinstance(value, Sequence) else None

    def private(self, ds: Dataset) -> None:
        keep: set[int] = set()
        if self.p.options.retain_safe_private:
            keep = safe_private_tags(ds, self.p._safe)
        d = ds._dict
        for tag in [t for t in d if (t >> 16) & 1 and t not in keep]:
            del d[tag]
        if keep:
            self._safe_private_sequences(ds, keep)
        ds._private_blocks = {}

    def _safe_private_sequences(self, ds: Dataset, keep: set[int]) -> None:
        """Kept private sequences are de-identified inside; one not parsable is removed."""
        for tag in keep:
            if tag & 0xFF00 == 0:
                continue  # a Private Creator element
            elem = ds._dict[tag]
            if elem.VR != "SQ":
                creator = str(ds[(tag & 0xFFFF0000) | ((tag >> 8) & 0xFF)].value).strip()
                if SAFE_PRIVATE_VR.get((creator, tag >> 16, tag & 0xFF)) != "SQ":
                    continue
            self.items(ds, tag)

    def element(self, ds: Dataset, tag: int, code: str, raw=None) -> None:
        if raw is None:
            raw = ds._dict[tag]
        vr = raw_vr(raw)
        if vr is not None and vr != "SQ" and code in ("U", "Z", "C"):
            if self._raw_element(ds, tag, code, raw, vr):
                return
        try:
            elem = ds[tag]
        except Exception:  # a value pydicom cannot convert: nothing of it may stay
            del ds._dict[tag]
            return
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
            if vr != "UI":
                del ds._dict[tag]  # not decodable as UIDs (UN of an unknown attribute)
            elif elem.VM:
                ds[tag] = DataElement(tag, vr, self._remap(elem.value))
            return
        if code == "Z":
            if tag in (_PATIENT_ID, _PATIENT_NAME) and self.p.patient_id == "hash":
                ds[tag] = DataElement(tag, vr, self.p.uids.pseudonym(self.original_pid, prefix=self.p.pseudonym_prefix))
            else:
                ds[tag] = empty_element(tag, vr)
            return
        if code == "D":
            self.dummy(ds, tag, vr, elem.value)
            return
        if code == "C":
            self.clean(ds, elem)
            return
        raise ValueError(f"unknown de-identification action {code!r} for {elem.tag}")

    def _remap(self, value):
        remap = self.p.uids.remap
        if isinstance(value, (list, MultiValue)):
            return [remap(str(v)) for v in value]
        return remap(str(value))

    def dummy(self, ds: Dataset, tag: int, vr: str, value) -> None:
        """D: a value valid for the VR that carries nothing of the original."""
        vr = vr.split(" or ")[0]
        if vr == "UI":
            new = self._remap(value) if value else self.p.uids.remap("dummy")
        elif vr == "PN":
            new = self.p.uids.pseudonym(str(value or ""), prefix=self.p.pseudonym_prefix)
        elif vr == "UN" and dictionary_vr(tag) == "UN":
            new = b"\x00" * 8  # an attribute defined as UN (Selector UN Value)
        else:
            new = fixed_dummy(vr)
            if new is None:  # UN of an attribute the dictionary lacks: no valid dummy, remove
                del ds._dict[tag]
                return
        ds[tag] = DataElement(tag, vr, new)

    def _raw_element(self, ds: Dataset, tag: int, code: str, raw, vr: str) -> bool:
        """The fast path for U, Z and C on an element as read; False: not handled."""
        d = ds._dict
        if code == "Z":
            if tag in (_PATIENT_ID, _PATIENT_NAME) and self.p.patient_id == "hash":
                return False
            d[tag] = empty_element(tag, vr)
            return True
        if code == "C" and vr in TEXT_VRS:
            return self._raw_clean_text(ds, raw, vr)
        if not isinstance(raw, RawDataElement) or raw.value is None or vr not in ASCII_VRS:
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
            d[tag] = raw_text(raw, out, b"\x00")
            return True
        # C
        if vr in DATE_VRS:
            if not self._shift:
                d[tag] = empty_element(tag, vr)
                return True
            if not data or not data.isascii():
                return False  # empty: the slow path keeps the value as it is
            # As pydicom reads it: trailing padding removed, then split into values.
            parts = data.decode("ascii").rstrip(" \x00").split("\\")
            days = self.offset_days()
            shifted_parts = [shift_dates(v, vr, days) for v in parts]
            if any(not isinstance(v, str) or v != v.rstrip(" \x00") for v in shifted_parts):
                return False
            d[tag] = raw_text(raw, "\\".join(shifted_parts), b" ")
            return True
        if vr == "TM":
            return True  # times of day do not move with a whole-day date shift
        return False
