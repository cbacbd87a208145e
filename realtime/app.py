"""The HTTP side of the realtime service (FastAPI): STOW-RS, health, metrics, monitoring.

OpenAPI docs: /docs and /openapi.json (FastAPI defaults).
"""
from __future__ import annotations

import logging
import shutil
import time
import uuid
from datetime import datetime, timedelta, timezone

from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from sqlalchemy import func, select, text
from starlette.concurrency import run_in_threadpool

from axiom_dagster.config.models import AxiomConfig
from axiom_dagster.ingest.landing import LandingZone
from axiom_dagster.store.deliveries import DeliveryState
from axiom_dagster.store import audit
from axiom_dagster.store.schema import associations, ledger
from axiom_dagster.dicom.uids import is_valid_uid, uid_problem

from . import stow
from .exceptions_api import add_exception_routes
from .auth import Authenticator, Principal, requirer
from .logs import correlation_id
from .metrics import CONTENT_TYPE, Metrics

log = logging.getLogger("axiom.realtime.http")
DICOM_JSON = "application/dicom+json"


def create_app(config: AxiomConfig, zone: LandingZone, metrics: Metrics, dicom_status=None) -> FastAPI:
    """`dicom_status()` returns {listener: {"port":..., "open_associations":...}} for readiness."""
    app = FastAPI(title="Axiom realtime ingest", version="0.1.0",
                  description="STOW-RS ingest, health, metrics and monitoring of the Axiom landing zone.")
    store = zone.store
    auth = Authenticator(store.engine, config.auth)
    require = requirer(auth)
    http_cfg = config.http

    @app.middleware("http")
    async def correlation(request: Request, call_next):
        rid = request.headers.get("x-request-id") or uuid.uuid4().hex
        rid = rid[:64] if rid.replace("-", "").isalnum() else uuid.uuid4().hex
        token = correlation_id.set(rid)
        request.state.request_id = rid
        started = time.perf_counter()
        try:
            response = await call_next(request)
        except Exception:
            log.exception("request failed", extra={"method": request.method, "path": request.url.path})
            response = JSONResponse({"detail": "internal error", "request_id": rid}, status_code=500)
        route = getattr(request.scope.get("route"), "path", "unmatched")
        metrics.http_requests.inc(route=route, status=str(response.status_code))
        response.headers["X-Request-ID"] = rid
        log.info("http request", extra={"method": request.method, "route": route, "status": response.status_code,
                                        "ms": round((time.perf_counter() - started) * 1000, 1),
                                        "client_ip": request.client.host if request.client else None})
        correlation_id.reset(token)
        return response

    # ---- health -------------------------------------------------------------------------

    @app.get("/health", tags=["health"], summary="Liveness (open)")
    def health():
        return {"status": "ok"}

    @app.get("/health/ready", tags=["health"], summary="Readiness: state store, landing zone, disk space (open)")
    def ready():
        checks: dict[str, dict] = {}
        try:
            with store.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            checks["state_store"] = {"ok": True}
        except Exception as exc:
            checks["state_store"] = {"ok": False, "error": type(exc).__name__}
        root = zone.root
        try:
            root.mkdir(parents=True, exist_ok=True)
            probe = root / f".ready-{uuid.uuid4().hex}"
            probe.write_bytes(b"ok")
            probe.unlink()
            checks["landing_zone"] = {"ok": True}
        except OSError as exc:
            checks["landing_zone"] = {"ok": False, "error": exc.strerror or str(exc)}
        try:
            free_mb = shutil.disk_usage(root).free / 1e6
            checks["disk_free"] = {"ok": free_mb >= http_cfg.disk_free_threshold_mb, "free_mb": round(free_mb),
                                   "threshold_mb": http_cfg.disk_free_threshold_mb}
        except OSError as exc:
            checks["disk_free"] = {"ok": False, "error": exc.strerror}
        if dicom_status is not None:
            listeners = dicom_status()
            checks["dicom_listeners"] = {"ok": all(v.get("accepting") for v in listeners.values()), "listeners": listeners}
        ok = all(c["ok"] for c in checks.values())
        return JSONResponse({"status": "ready" if ok else "not ready", "checks": checks}, status_code=200 if ok else 503)

    # ---- metrics ------------------------------------------------------------------------

    metrics_deps = [] if http_cfg.metrics_public else [Depends(require("metrics"))]

    @app.get("/metrics", tags=["monitoring"], summary="Prometheus metrics", dependencies=metrics_deps,
             response_class=PlainTextResponse)
    def prometheus():
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    # ---- monitoring ---------------------------------------------------------------------

    @app.get("/api/v1/monitoring/arrivals", tags=["monitoring"], summary="Ledger rows after a cursor")
    def arrivals(after: int = Query(0, ge=0, description="ledger id cursor"),
                 limit: int = Query(100, ge=1, le=1000),
                 _: Principal = Depends(require("monitor"))):
        rows = store.ledger_after(after, limit)
        items = [{
            "id": r.id, "received_at": r.received_at.isoformat(), "arrival_date": r.arrival_date,
            "study_uid": r.study_uid, "series_uid": r.series_uid, "sop_uid": r.sop_uid,
            "sop_class_uid": r.sop_class_uid, "transfer_syntax_uid": r.transfer_syntax_uid,
            "size": r.size, "source": r.source, "calling_ae": r.calling_ae, "called_ae": r.called_ae,
            "source_ip": r.source_ip, "association_id": r.association_id,
        } for r in rows]
        return {"items": items, "next_cursor": items[-1]["id"] if items else after}

    @app.get("/api/v1/monitoring/counts", tags=["monitoring"], summary="Arrival counts by source and day")
    def counts(days: int = Query(7, ge=1, le=366), _: Principal = Depends(require("monitor"))):
        since = (datetime.now(timezone.utc) - timedelta(days=days - 1)).strftime("%Y-%m-%d")
        with store.engine.connect() as conn:
            total, total_bytes = conn.execute(select(func.count(), func.coalesce(func.sum(ledger.c.size), 0))).one()
            by_source = conn.execute(
                select(ledger.c.source, func.count(), func.sum(ledger.c.size), func.count(ledger.c.study_uid.distinct()))
                .group_by(ledger.c.source)).all()
            by_day = conn.execute(
                select(ledger.c.arrival_date, ledger.c.source, func.count(), func.sum(ledger.c.size))
                .where(ledger.c.arrival_date >= since)
                .group_by(ledger.c.arrival_date, ledger.c.source).order_by(ledger.c.arrival_date)).all()
            open_assoc = conn.execute(
                select(func.count()).select_from(associations).where(associations.c.ended_at.is_(None))).scalar_one()
        return {
            "instances": total, "bytes": int(total_bytes), "open_associations": open_assoc,
            "by_source": [{"source": s, "instances": n, "bytes": int(b or 0), "studies": st} for s, n, b, st in by_source],
            "by_day": [{"arrival_date": d, "source": s, "instances": n, "bytes": int(b or 0)} for d, s, n, b in by_day],
        }

    @app.get("/api/v1/studies/{study_uid}", tags=["monitoring"], summary="Status of one study")
    def study_status(study_uid: str, _: Principal = Depends(require("monitor"))):
        """Per-study status (received → queued → processing → done/failed) with its Dagster
        run and partition, deliveries per destination, exceptions and audit trail."""
        if not is_valid_uid(study_uid):
            return JSONResponse({"detail": f"not a valid StudyInstanceUID ({uid_problem(study_uid)})"}, status_code=400)
        report = store.study_report(study_uid)
        if report is None:
            return JSONResponse({"detail": "study not known to the state store"}, status_code=404)
        report["delivery_state"] = DeliveryState(store).study_rollup(study_uid)
        return report

    add_exception_routes(app, config, store, require)
    # ---- audit log ----------------------------------------------------------------------

    @app.get("/api/v1/audit", tags=["audit"], summary="Audit log entries after a sequence number")
    def audit_entries(after: int = Query(0, ge=0), limit: int = Query(100, ge=1, le=1000),
                      action: str | None = Query(None, max_length=64), target: str | None = Query(None, max_length=256),
                      _: Principal = Depends(require("audit"))):
        items = [e.as_json() for e in audit.entries(store, after=after, limit=limit, action=action, target=target)]
        return {"items": items, "next_cursor": items[-1]["seq"] if items else after}

    @app.get("/api/v1/audit/verify", tags=["audit"], summary="Check the audit log's hash chain")
    def audit_verify(_: Principal = Depends(require("audit"))):
        report = audit.verify(store)
        return {"ok": report.ok, "entries": report.entries, "head_seq": report.head_seq,
                "head_hash": report.head_hash, "problems": report.problems}

    @app.get("/api/v1/audit/instances/{sop_uid}", tags=["audit"], summary="Where one instance went")
    def audit_routes(sop_uid: str, _: Principal = Depends(require("audit"))):
        if not is_valid_uid(sop_uid):
            return JSONResponse({"detail": f"not a valid SOPInstanceUID: {sop_uid[:80]!r}"}, status_code=400)
        return {"sop_uid": sop_uid, "routes": audit.routes_of(store, sop_uid)}

    # ---- STOW-RS ------------------------------------------------------------------------

    async def _stow(request: Request, study: str | None) -> Response:
        if study is not None and not is_valid_uid(study):
            return JSONResponse({"detail": f"not a valid StudyInstanceUID ({uid_problem(study)})"}, status_code=400)
        try:
            boundary = stow.check_content_type(request.headers.get("content-type"))
        except stow.BadRequest as exc:
            return JSONResponse({"detail": str(exc)}, status_code=exc.status)
        spool = stow.new_spool(zone.root)
        try:
            parser = stow.StreamingParts(boundary, spool, http_cfg.max_part_mb * 1024 * 1024)
            try:
                async for chunk in request.stream():
                    if chunk:
                        parser.write(chunk)
                parts = parser.finish()
            except stow.BadRequest as exc:
                log.warning("STOW-RS request refused", extra={"status": exc.status, "detail": str(exc)})
                return JSONResponse({"detail": str(exc)}, status_code=exc.status)
            client_ip = request.client.host if request.client else None
            outcome = await run_in_threadpool(stow.land_parts, zone, metrics, parts, study, client_ip,
                                              request.state.request_id)
        finally:
            await run_in_threadpool(stow.drop_spool, spool)
        base = _public_base(request, http_cfg.public_base_url) + "/api/v1/dicomweb"
        status = stow.http_status(outcome)
        log.info("STOW-RS stored", extra={"stored": len(outcome.stored), "failed": len(outcome.failed),
                                          "status": status, "principal": request.state.principal.subject})
        return JSONResponse(stow.response_json(outcome, base), status_code=status, media_type=DICOM_JSON)

    stow_doc = dict(tags=["dicomweb"], response_class=JSONResponse, responses={
        200: {"description": "all instances stored"}, 202: {"description": "some instances failed"},
        400: {"description": "malformed request"}, 401: {"description": "no or invalid credentials"},
        403: {"description": "role lacks the ingest permission"}, 409: {"description": "no instance stored"},
        415: {"description": "not multipart/related; type=application/dicom"}},
        openapi_extra={"requestBody": {"content": {"multipart/related; type=\"application/dicom\"": {
            "schema": {"type": "string", "format": "binary"}}}, "required": True}})

    @app.post("/api/v1/dicomweb/studies", summary="STOW-RS: store instances", **stow_doc)
    async def stow_studies(request: Request, _: Principal = Depends(require("ingest"))):
        return await _stow(request, None)

    @app.post("/api/v1/dicomweb/studies/{study_uid}", summary="STOW-RS: store instances of one study", **stow_doc)
    async def stow_study(study_uid: str, request: Request, _: Principal = Depends(require("ingest"))):
        return await _stow(request, study_uid)

    return app


def _public_base(request: Request, configured: str | None) -> str:
    """Base URL for RetrieveURL: the configured one, else the request's. Some clients
    (dicomweb-client) send a Host header without the port; then the listening port is used."""
    if configured:
        return configured.rstrip("/")
    base = str(request.base_url).rstrip("/")
    server = request.scope.get("server")
    if request.url.port is None and server and server[1] not in (80, 443):
        base = f"{request.url.scheme}://{request.url.hostname}:{server[1]}{request.scope.get('root_path', '')}"
    return base.rstrip("/")
