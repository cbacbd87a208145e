"""DICOM UID grammar (PS3.5 section 9.1) and safe use of UIDs as path components."""
from __future__ import annotations

import re

# Components are digits without leading zeros (a lone "0" is allowed), separated by dots;
# at most 64 characters in all.
_UID_RE = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))+$")
MAX_UID_LENGTH = 64


class InvalidUID(ValueError):
    """A value that is not a valid DICOM UID."""


def is_valid_uid(value: object) -> bool:
    return isinstance(value, str) and len(value) <= MAX_UID_LENGTH and bool(_UID_RE.match(value))


def require_uid(value: object, attribute: str) -> str:
    """Return `value` if it is a valid UID, else raise InvalidUID naming the attribute.

    Every UID passes here before it becomes part of a file path: the grammar admits only
    digits and dots and never "." or "..", so a valid UID cannot escape its folder.
    """
    text = str(value).strip("\x00 ") if value is not None else ""
    if not is_valid_uid(text):
        shown = text if len(text) <= 80 else text[:77] + "..."
        raise InvalidUID(f"{attribute} is not a valid DICOM UID: {shown!r}")
    return text
