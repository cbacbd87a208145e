"""HTTP endpoints of the exception queue: list open exceptions, requeue a delivery failure (to
its destination or another), resolve; the authenticated principal is recorded as who."""
from __future__ import annotations

from fastapi import Body, Depends, FastAPI, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from axiom_dagster.config.models import AxiomConfig
from axiom_dagster.store.deliveries import DeliveryState
from axiom_dagster.store.state import StateStore

from .auth import Principal


class RequeueRequest(BaseModel):
    destination: str | None = Field(None, description="another configured destination; default: the failed one")


class ResolveRequest(BaseModel):
    note: str = Field("resolved", max_length=500, description="what was done (no patient data)")


def add_exception_routes(app: FastAPI, config: AxiomConfig, store: StateStore, require) -> None:
    state = DeliveryState(store)
    known = {d.name for d in config.destinations}

    def _act(action):
        try:
            return action()
        except LookupError as exc:
            return JSONResponse({"detail": str(exc)}, status_code=404)
        except ValueError as exc:
            return JSONResponse({"detail": str(exc)}, status_code=409)

    @app.get("/api/v1/exceptions", tags=["exceptions"], summary="Exceptions (open by default)")
    def list_exceptions(include_resolved: bool = Query(False), stage: str | None = Query(None, max_length=16),
                        limit: int = Query(500, ge=1, le=5000), _: Principal = Depends(require("monitor"))):
        return state.list_exceptions(open_only=not include_resolved, stage=stage, limit=limit)

    @app.post("/api/v1/exceptions/{exception_id}/retry", tags=["exceptions"],
              summary="Requeue a delivery failure, to its destination or another")
    def retry(exception_id: int, body: RequeueRequest = Body(default_factory=RequeueRequest),
              who: Principal = Depends(require("manage_exceptions"))):
        if body.destination is not None and body.destination not in known:
            return JSONResponse({"detail": f"unknown destination {body.destination!r}"}, status_code=400)
        return _act(lambda: state.requeue(exception_id, who.subject, body.destination))

    @app.post("/api/v1/exceptions/{exception_id}/resolve", tags=["exceptions"], summary="Resolve an exception")
    def resolve(exception_id: int, body: ResolveRequest = Body(default_factory=ResolveRequest),
                who: Principal = Depends(require("manage_exceptions"))):
        return _act(lambda: state.resolve(exception_id, who.subject, body.note))
