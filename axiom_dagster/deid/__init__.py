"""PS3.15 de-identification over pydicom Datasets: Table E.1-1, profile options, UID remapping.
Imports config and dicom only.
"""
from axiom_dagster.deid.profile import CID_7050, SAFE_PRIVATE, DeidOptions, DeidProfile, resolve_code, shift_dates
from axiom_dagster.deid.table_e1_1 import TABLE, TABLE_EDITION, lookup
from axiom_dagster.deid.uidmap import MissingSecretError, UIDMapper, secret_from_env

__all__ = [
    "CID_7050", "SAFE_PRIVATE", "DeidOptions", "DeidProfile", "MissingSecretError", "TABLE",
    "TABLE_EDITION", "UIDMapper", "lookup", "resolve_code", "secret_from_env", "shift_dates",
]
