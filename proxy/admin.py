"""/admin/*: operator endpoints behind the admin token; routes, seal and students here, the
canary controls in `admin_canary`, jobs in `admin_jobs`."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Depends, Request

from logbook.writer import SealFailed
from proxy.errors import ApiError
from proxy.settings import RouteSettings
from proxy.state import proxy_state
from retrain.students import list_students


def require_admin(request: Request) -> None:
    proxy_state(request).auth.admin(request)


router = APIRouter(prefix="/admin", dependencies=[Depends(require_admin)])


@router.get("/routes")
async def list_routes(request: Request) -> dict[str, Any]:
    """The routes and their teachers (never their keys)."""
    state = proxy_state(request)
    routes = [
        {
            "name": r.name,
            "teacher": r.teacher,
            "teacher_api_base": r.teacher_api_base,
            "upstream": "passthrough" if r.passthrough else "litellm",
            "capture": r.capture,
            "any_model": r.any_model,
        }
        for r in state.settings.routes
    ]
    return {"routes": routes}


@router.post("/seal")
async def seal(request: Request) -> dict[str, Any]:
    """Write queued rows and seal them into segments now (instead of waiting for the timer)."""
    logbook = proxy_state(request).logbook
    await logbook.flush()
    try:
        sealed = await logbook.seal()
    except SealFailed as exc:
        raise ApiError(503, f"{exc}.", "server_error", code="seal_failed") from None
    return {
        "segments": [
            {"table": s.table, "route": s.route, "rows": s.rows, "path": str(s.path)}
            for s in sealed
        ]
    }


@router.get("/students")
async def students(request: Request) -> dict[str, Any]:
    """Registered students of every route, with their status."""
    data_dir = proxy_state(request).settings.data_dir
    return {"students": [s.as_dict() for s in list_students(data_dir)]}


def route_named(request: Request, name: Any) -> RouteSettings:
    """The configured route `name`, or a 404 that lists the routes."""
    state = proxy_state(request)
    if not isinstance(name, str) or name not in state.routes:
        known = ", ".join(sorted(state.routes)) or "none"
        raise ApiError(404, f"Unknown route {name!r}; routes: {known}.", code="route_not_found")
    return state.routes[name]


async def json_body(request: Request) -> dict[str, Any]:
    """The request's JSON object ({} for an empty body), or a 400."""
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        raise ApiError(400, "The request body is not valid JSON.", code="invalid_json") from None
    if not isinstance(body, dict):
        raise ApiError(400, "The request body must be a JSON object.", code="invalid_json")
    return body
