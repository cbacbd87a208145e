"""Which SOP classes the C-STORE SCP accepts: every storage SOP class of the standard,
retired ones included (old modalities still send Ultrasound Image Storage
1.2.840.10008.5.1.4.1.1.6), plus private SOP classes listed in the listener's config."""
from __future__ import annotations

import re

from pydicom._uid_dict import UID_dictionary
from pynetdicom.presentation import AllStoragePresentationContexts
from pynetdicom.service_class import StorageServiceClass
from pynetdicom.sop_class import register_uid, uid_to_service_class

_NOT_STORED = {"1.2.840.10008.1.3.10"}  # Media Storage Directory (DICOMDIR): never C-STOREd


def storage_sop_classes(extra: list[str] | tuple[str, ...] = ()) -> list[str]:
    """pynetdicom's storage contexts, every (retired) storage class in pydicom's UID
    dictionary, then `extra`; each once, in that order."""
    named = [
        uid for uid, (name, kind, *_rest) in UID_dictionary.items()
        if kind == "SOP Class" and "Storage" in name and "Commitment" not in name and uid not in _NOT_STORED
    ]
    ordered = list(dict.fromkeys(
        [cx.abstract_syntax for cx in AllStoragePresentationContexts] + sorted(named) + list(extra)))
    for uid in ordered:  # pynetdicom dispatches C-STORE only for UIDs it maps to storage
        if uid_to_service_class(uid) is not StorageServiceClass:
            register_uid(uid, _keyword(uid), StorageServiceClass)
    return ordered


def _keyword(uid: str) -> str:
    entry = UID_dictionary.get(uid)
    name = entry[4] if entry and entry[4] else "Private" + re.sub(r"\D", "_", uid)
    return re.sub(r"\W", "", name)
