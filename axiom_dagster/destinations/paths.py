"""Rendering destination path templates from DICOM attributes without path traversal."""
from __future__ import annotations

import re
import string
from pathlib import Path

from pydicom import Dataset

from axiom_dagster.dicom.fastvalues import fast_get
from axiom_dagster.dicom.uids import require_uid

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_UID_FIELDS = {"StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID"}


def template_fields(template: str) -> list[str]:
    return [name for _, name, _, _ in string.Formatter().parse(template) if name]


def safe_component(value: object) -> str:
    """A non-UID attribute value as one safe path component (never empty, '.' or '..')."""
    text = _UNSAFE.sub("_", str(value if value is not None else "").strip()).strip("._")
    return text[:64] or "UNKNOWN"


def render_path(root: Path, template: str, ds: Dataset) -> Path:
    values = {}
    for name in template_fields(template):
        raw = fast_get(ds, name, "")
        values[name] = require_uid(raw, name) if name in _UID_FIELDS else safe_component(raw)
    return root / template.format(**values)
