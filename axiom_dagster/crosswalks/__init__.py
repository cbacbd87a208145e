"""Crosswalks: sources (SQL, CSV/Parquet, GCS/S3), Parquet snapshots with checks and promotion,
lookup indexes and the lookup-miss table. Imports config, dicom and store only.
"""
