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
        # The problem, never the value: an invalid "UID" may be a damaged copy of anything.
        raise InvalidUID(f"{attribute} is not a valid DICOM UID ({uid_problem(text)})")
    return text


def uid_problem(text: str) -> str:
    """What is wrong with an invalid UID, in words that do not repeat it."""
    if not text:
        return "missing or empty"
    if len(text) > MAX_UID_LENGTH:
        return f"{len(text)} characters, more than {MAX_UID_LENGTH}"
    if any(c not in "0123456789." for c in text):
        return "characters other than digits and dots"
    return "an empty component, a leading zero or a single component"
