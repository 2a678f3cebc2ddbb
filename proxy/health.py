"""Liveness, readiness, metrics and the model list."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.responses import JSONResponse, Response

from proxy.state import proxy_state

router = APIRouter()


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(request: Request) -> Response:
    """Ready once the logbook is open (journals replayed, interrupted seals finished), and
    while capture keeps up (not while rows wait on disk for a full queue or a failing disk)
    and sealing works (not while the store refuses segments: rows pile up in the logbook)."""
    logbook = proxy_state(request).logbook
    if not logbook.is_open:
        return JSONResponse({"status": "starting"}, status_code=503)
    reason = logbook.degraded or logbook.seal_failing
    if reason is not None:
        return JSONResponse({"status": "degraded", "reason": reason}, status_code=503)
    return JSONResponse({"status": "ready"})


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    """Prometheus text format."""
    state = proxy_state(request)
    state.metrics.capture_queue_depth.set(state.logbook.queue_depth)
    return Response(state.metrics.render(), media_type=CONTENT_TYPE_LATEST)


@router.get("/v1/models")
async def models(request: Request) -> dict[str, Any]:
    """The configured routes, as OpenAI's model list."""
    state = proxy_state(request)
    state.auth.client(request)
    data = [
        {"id": r.name, "object": "model", "created": 0, "owned_by": "apprentice"}
        for r in state.settings.routes
    ]
    return {"object": "list", "data": data}
