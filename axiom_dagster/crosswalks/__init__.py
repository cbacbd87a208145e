"""Crosswalk lookup tables used by the rule engine (CSV/Parquet files today).
Imports config and dicom only.
"""
