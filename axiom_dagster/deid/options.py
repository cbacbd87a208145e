"""PS3.15 profile options (Table E.1-1 columns), their CID 7050 codes, and how a table row
resolves to one action under the chosen options."""
from __future__ import annotations

from dataclasses import dataclass

from axiom_dagster.deid.table_e1_1 import TableRow

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

# Type of an attribute in common composite IODs, where a combined code needs it.
REQUIRED_TYPE: dict[int, str] = {
    0x00080023: "2",  # Content Date (General Image: Type 2C)
    0x00080033: "2",  # Content Time
    0x00700084: "2",  # Content Creator's Name (Presentation State: Type 2)
}

OPTION_ORDER = (
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
        return [name for name in OPTION_ORDER if getattr(self, name)]


def resolve_code(row: TableRow, options: DeidOptions, keep_references: bool = True) -> str:
    """The single action (X, Z, D, K, C, U, U*) for a table row under the given options.

    Combined codes need the attribute's Type in the IOD, which a header-level tool does not
    know: Z/D resolves to Z, X/Z, X/D and X/Z/D to X, except for `REQUIRED_TYPE` (D if
    Type 1, Z if Type 2). X/Z/U* resolves to U* (keep the sequence, replace every contained
    UID) unless `keep_references` is off.
    """
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
