"""Ingest: atomic landing of files, arrival metadata, group-committed ledger writes, quarantine.
Imports config, dicom and store; never the pipeline.
"""
