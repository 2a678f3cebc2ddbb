"""/admin/*: operator endpoints, behind the admin token."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from proxy.state import proxy_state


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
        for r in state.config.routes
    ]
    return {"routes": routes}


@router.post("/seal")
async def seal(request: Request) -> dict[str, Any]:
    """Write queued rows and seal them into segments now (instead of waiting for the timer)."""
    logbook = proxy_state(request).logbook
    await logbook.flush()
    sealed = await logbook.seal()
    return {
        "segments": [
            {"table": s.table, "route": s.route, "rows": s.rows, "path": str(s.path)}
            for s in sealed
        ]
    }
