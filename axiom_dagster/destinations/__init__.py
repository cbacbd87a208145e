"""Destinations and confirmed delivery: senders (folder, C-STORE, STOW-RS, Healthcare API, GCS,
S3), staging, retry/backoff, the delivery loop and exception commands. Imports config, dicom, store.
"""
