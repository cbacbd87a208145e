"""Private attributes under PS3.15: removed (Basic Profile), or kept only when Table E.3.10-1
(Safe Private Attributes, generated into _table_e3_10_1.py) lists them and the Retain Safe
Private Option is on, with their Private Creator elements."""
from __future__ import annotations

from pydicom import Dataset

from axiom_dagster.deid import _table_e3_10_1

SAFE_PRIVATE_EDITION = f"DICOM PS3.15 {_table_e3_10_1.EDITION} Table E.3.10-1"

# (private creator, group, element offset within the block) -> VR as the table gives it.
SAFE_PRIVATE_VR: dict[tuple[str, int, int], str] = {
    (creator, group, offset): vr for creator, group, offset, vr in _table_e3_10_1.ROWS
}
SAFE_PRIVATE: frozenset[tuple[str, int, int]] = frozenset(SAFE_PRIVATE_VR)


def _creator(ds: Dataset, tag: int) -> str | None:
    try:
        value = ds[tag].value
    except Exception:  # an undecodable creator: its block cannot be judged safe
        return None
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    return str(value).strip() if value is not None else None


def safe_private_tags(ds: Dataset, safe: frozenset[tuple[str, int, int]]) -> set[int]:
    """The private tags of `ds` to keep: safe elements present and their creators."""
    keep: set[int] = set()
    by_group: dict[int, dict[str, list[int]]] = {}
    for creator, group, offset in safe:
        by_group.setdefault(group, {}).setdefault(creator, []).append(offset)
    groups = {tag >> 16 for tag in ds._dict if (tag >> 16) & 1} & by_group.keys()
    for group in groups:
        creators = by_group[group]
        for block in range(0x10, 0x100):
            creator_tag = (group << 16) | block
            if creator_tag not in ds._dict:
                continue
            offsets = creators.get(_creator(ds, creator_tag) or "")
            if not offsets:
                continue
            for offset in offsets:
                tag = (group << 16) | (block << 8) | offset
                if tag in ds._dict:
                    keep.add(tag)
                    keep.add(creator_tag)
    return keep
