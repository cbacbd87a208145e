"""Metadata catalog: per-batch Parquet tables and the DuckDB views over them.
Imports config, dicom and store only.
"""
