"""Realtime ingest service: C-STORE/C-ECHO SCP listeners (pynetdicom) and an HTTP API
(FastAPI: STOW-RS, health, Prometheus metrics, monitoring) in one process.

Start it with `axiom realtime --config ...`. Modules: dimse (SCP), stow (STOW-RS), app
(FastAPI), auth (API keys + JWT), dicomio (byte-level UID reader, File Meta writer),
metrics, logs (JSON, correlation ids), service (runner, graceful shutdown, crash recovery).
"""
