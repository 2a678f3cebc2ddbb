"""/admin/canary: each route's canary, and the manual controls (its handler: the canary loop,
found on app.state.canary)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from canary.controller import CanaryError
from canary.loop import CanaryLoop, StudentRefused
from proxy.admin import json_body, require_admin, route_named
from proxy.errors import ApiError

router = APIRouter(prefix="/admin/canary", dependencies=[Depends(require_admin)])
ACTIONS = ("start", "set-weight", "pause", "resume", "promote", "rollback")


class VersionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: str = Field(min_length=1, max_length=32, description="A student version, e.g. v3.")


class WeightIn(VersionIn):
    weight: int = Field(ge=0, le=100, description="Percent of the route's traffic, 0-100.")


class RollbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field("rolled back by hand", max_length=500)


@router.get("")
async def canary_status(request: Request) -> dict[str, Any]:
    """Each route's canary: state, step, weights, last checks with values, history."""
    loop = _loop(request)
    return {"routes": {name: loop.view(name) for name in loop.controllers}}


@router.post("/{route}/{action}")
async def canary_action(request: Request, route: str, action: str) -> dict[str, Any]:
    """start, set-weight, pause, resume, promote, rollback; answers with the new state."""
    loop = _loop(request)
    if route not in loop.controllers:
        route_named(request, route)  # the 404 that lists the routes
    if action not in ACTIONS:
        raise ApiError(
            404,
            f"Unknown canary action {action!r}; use start, set-weight, pause, resume, "
            "promote or rollback.",
            code="unknown_action",
        )
    body = await json_body(request)
    ctl = loop.controllers[route]
    try:
        if action == "set-weight":
            weighted = WeightIn.model_validate(body)
            loop.set_weight(route, weighted.version, weighted.weight)
        elif action == "start":
            loop.start(route, VersionIn.model_validate(body).version)
        elif action == "pause":
            ctl.pause()
        elif action == "resume":
            ctl.resume()
        elif action == "promote":
            ctl.promote()
        else:
            ctl.rollback(detail=RollbackIn.model_validate(body).reason, reason="manual")
    except StudentRefused as exc:
        raise ApiError(400, str(exc), code=exc.code) from None
    except CanaryError as exc:
        raise ApiError(409, str(exc), code="canary_conflict") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        raise ApiError(
            422, f"Invalid field {field}: {first['msg']}.", code="invalid_field"
        ) from None
    await loop.persist()  # the registry and the logbook agree before the answer goes out
    return {"route": route, **loop.view(route)}


def _loop(request: Request) -> CanaryLoop:
    loop: CanaryLoop | None = request.app.state.canary
    if loop is None:
        raise ApiError(409, "Canary control is not running in this server.", code="no_rollout")
    return loop
