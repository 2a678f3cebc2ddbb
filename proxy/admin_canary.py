"""/admin/canary: each route's canary, and the manual controls (its handler: the canary loop,
found on app.state.canary)."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from canary.controller import CanaryError
from canary.loop import CanaryLoop, StudentRefused
from cluster.control import ControlUnavailable
from proxy.admin import json_body, require_admin, route_named
from proxy.errors import ApiError
from proxy.state import proxy_state
from retrain.students import retrain_verdict

router = APIRouter(prefix="/admin/canary", dependencies=[Depends(require_admin)])
cluster_router = APIRouter(prefix="/admin/cluster", dependencies=[Depends(require_admin)])
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
    data_dir = proxy_state(request).settings.data_dir
    verdicts = await asyncio.to_thread(
        lambda: {name: retrain_verdict(data_dir, name) for name in loop.controllers}
    )
    return {
        "routes": {name: loop.view(name) | {"retrain": verdicts[name]} for name in loop.controllers}
    }


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
    try:
        if action == "set-weight":
            weighted = WeightIn.model_validate(body)
            await loop.set_weight(route, weighted.version, weighted.weight)
        elif action == "start":
            await loop.start(route, VersionIn.model_validate(body).version)
        elif action == "pause":
            await loop.command(route, lambda ctl: ctl.pause())
        elif action == "resume":
            await loop.command(route, lambda ctl: ctl.resume())
        elif action == "promote":
            await loop.command(route, lambda ctl: ctl.promote())
        else:
            reason = RollbackIn.model_validate(body).reason
            await loop.command(route, lambda ctl: ctl.rollback(detail=reason, reason="manual"))
    except StudentRefused as exc:
        raise ApiError(400, str(exc), code=exc.code) from None
    except CanaryError as exc:
        raise ApiError(409, str(exc), code="canary_conflict") from None
    except ControlUnavailable as exc:
        raise ApiError(503, f"{exc}; nothing was changed.", "server_error",
                       code="control_plane_unavailable") from None  # fmt: skip
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        raise ApiError(
            422, f"Invalid field {field}: {first['msg']}.", code="invalid_field"
        ) from None
    # Stored in the control plane (every replica follows within a tick) and the registry
    # before the answer goes out.
    return {"route": route, **loop.view(route)}


@cluster_router.get("")
async def cluster_status(request: Request) -> dict[str, Any]:
    """This replica, the leader, and every live replica with its last heartbeat."""
    loop = _loop(request)
    try:
        return await asyncio.to_thread(loop.cluster)
    except ControlUnavailable as exc:
        raise ApiError(503, str(exc), "server_error", code="control_plane_unavailable") from None


def _loop(request: Request) -> CanaryLoop:
    loop: CanaryLoop | None = request.app.state.canary
    if loop is None:
        raise ApiError(409, "Canary control is not running in this server.", code="no_rollout")
    return loop
