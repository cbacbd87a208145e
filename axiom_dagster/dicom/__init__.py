"""Plain pydicom helpers every stage shares: UID rules and raw element value decoding.
Imports only config; no Dagster, no FastAPI.
"""
