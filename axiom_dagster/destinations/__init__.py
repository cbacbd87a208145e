"""Destinations the pipeline routes to: folder path templates today.
Imports config, dicom, store and ingest only.
"""
