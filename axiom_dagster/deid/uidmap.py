"""Deterministic UID remapping and keyed pseudonyms under a secret key.

The same input UID always maps to the same output UID for the same key: across
instances, studies, runs and machines, and wherever the UID occurs (top level or inside a
sequence such as ReferencedSOPInstanceUID). Output UIDs use the "2.25." root (PS3.5
Annex B.2: a UUID-derived integer), here the first 128 bits of HMAC-SHA256(key, uid),
so they are at most 44 characters and need no registered root.
"""
from __future__ import annotations

import hashlib
import hmac
import os

# Keys shorter than this are refused: a short key makes the HMAC guessable.
MIN_KEY_BYTES = 16


class MissingSecretError(RuntimeError):
    """The secret key for de-identification is not configured."""


def secret_from_env(env_var: str) -> bytes:
    """Read the secret key from environment variable `env_var`; fail clearly if unset."""
    value = os.environ.get(env_var)
    if not value:
        raise MissingSecretError(
            f"environment variable {env_var} is not set: de-identification needs a secret "
            f"key (at least {MIN_KEY_BYTES} bytes) to remap UIDs and derive pseudonyms"
        )
    key = value.encode("utf-8")
    check_key(key, env_var)
    return key


def check_key(key: bytes, origin: str = "secret_key") -> bytes:
    if len(key) < MIN_KEY_BYTES:
        raise MissingSecretError(f"{origin} is shorter than {MIN_KEY_BYTES} bytes")
    return key


class UIDMapper:
    """Keyed, stateless UID remapper; a small memo avoids rehashing repeated UIDs."""

    __slots__ = ("_key", "_memo")

    def __init__(self, key: bytes) -> None:
        self._key = check_key(key)
        self._memo: dict[str, str] = {}

    def __getstate__(self) -> bytes:  # picklable without the memo
        return self._key

    def __setstate__(self, key: bytes) -> None:
        self._key = key
        self._memo = {}

    def remap(self, uid: str) -> str:
        uid = uid.strip("\x00 ")
        if not uid:
            return uid
        out = self._memo.get(uid)
        if out is None:
            digest = hmac.new(self._key, b"uid\x00" + uid.encode("ascii", "replace"), hashlib.sha256).digest()
            out = "2.25." + str(int.from_bytes(digest[:16], "big"))
            if len(self._memo) > 100_000:  # bound memory in long-running workers
                self._memo.clear()
            self._memo[uid] = out
        return out

    def pseudonym(self, value: str, length: int = 16, prefix: str = "") -> str:
        """Keyed hash of `value` as uppercase hex, e.g. for a pseudonymous PatientID."""
        digest = hmac.new(self._key, b"pid\x00" + value.encode("utf-8"), hashlib.sha256).hexdigest()
        return prefix + digest[:length].upper()

    def day_offset(self, value: str, max_days: int) -> int:
        """Keyed per-value day shift in [-max_days, -1] (always into the past, never 0)."""
        digest = hmac.new(self._key, b"dateshift\x00" + value.encode("utf-8"), hashlib.sha256).digest()
        return -(int.from_bytes(digest[:8], "big") % max_days) - 1
