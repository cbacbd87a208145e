"""Realtime ingest service: C-STORE/C-ECHO SCP listeners (pynetdicom) and an HTTP API
(FastAPI: STOW-RS, health, Prometheus metrics, monitoring) in one process.

Start it with `axiom realtime --config ...`. Modules: dimse (SCP), prompt and dimse_network
(pynetdicom tuning, TLS), stow (STOW-RS), app (FastAPI), auth (API keys + JWT), metrics,
logs (JSON, correlation ids), service (runner, graceful shutdown, crash recovery).
"""
