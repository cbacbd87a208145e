"""PS3.15 de-identification over pydicom Datasets: Table E.1-1 (generated), options, UID remapping.
Imports config and dicom only.
"""
from axiom_dagster.deid.options import CID_7050, DeidOptions, resolve_code
from axiom_dagster.deid.private import SAFE_PRIVATE, SAFE_PRIVATE_EDITION
from axiom_dagster.deid.profile import DeidProfile
from axiom_dagster.deid.table_e1_1 import TABLE, TABLE_EDITION, lookup
from axiom_dagster.deid.uidmap import MissingSecretError, UIDMapper, secret_from_env
from axiom_dagster.deid.values import shift_dates

__all__ = [
    "CID_7050", "SAFE_PRIVATE", "SAFE_PRIVATE_EDITION", "DeidOptions", "DeidProfile", "MissingSecretError",
    "TABLE", "TABLE_EDITION", "UIDMapper", "lookup", "resolve_code", "secret_from_env", "shift_dates",
]
