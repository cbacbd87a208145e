"""The study pipeline: batching, per-instance worker (validate, morph, route), batch runner.
Imports every package before it (config, dicom, store, ingest, deid, crosswalks, ai, rules, catalog, destinations).
"""
