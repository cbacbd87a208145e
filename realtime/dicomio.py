"""Byte-level DICOM helpers of the receivers; they live in axiom_dagster.ingest.rawheader
(archive retrieval uses them too)."""
from axiom_dagster.ingest.rawheader import *  # noqa: F401,F403
from axiom_dagster.ingest.rawheader import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION, __all__  # noqa: F401
