"""Axiom on Dagster: DICOM data engineering core (no Dagster or FastAPI imports here,
except in definitions.py which assembles the Dagster Definitions)."""
