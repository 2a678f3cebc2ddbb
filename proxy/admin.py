"""/admin/*: operator endpoints, behind the admin token."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from apprentice.config import RouteConfig
from proxy.errors import ApiError
from proxy.rollout import Rollout
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


class VersionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: str = Field(min_length=1, max_length=32, description="A student version, e.g. v3.")


class WeightIn(VersionIn):
    weight: int = Field(ge=0, le=100, description="Percent of the route's traffic, 0-100.")


class RollbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field("rolled back by hand", max_length=500)


@router.get("/canary")
async def canary_status(request: Request) -> dict[str, Any]:
    """Each route's canary: state, step, weights, last checks with values, history."""
    rollout = _rollout(request)
    return {
        "routes": {
            name: ctl.snapshot() | {"weights": ctl.weights()}
            for name, ctl in rollout.controllers.items()
        }
    }


@router.post("/canary/{route}/{action}")
async def canary_action(request: Request, route: str, action: str) -> dict[str, Any]:
    """start, set-weight, pause, resume, promote, rollback; answers with the new state."""
    from monitoring.canary import CanaryError

    rollout = _rollout(request)
    ctl = rollout.controllers.get(route)
    if ctl is None:
        known = ", ".join(sorted(rollout.controllers)) or "none"
        raise ApiError(404, f"Unknown route {route!r}; routes: {known}.", code="route_not_found")
    body = await _json_body(request)
    try:
        if action in ("start", "set-weight"):
            parsed = (WeightIn if action == "set-weight" else VersionIn).model_validate(body)
            _check_registered(request, route, parsed.version)
            if isinstance(parsed, WeightIn):
                ctl.set_weight(parsed.version, parsed.weight, force=True)
            else:
                ctl.start(parsed.version, force=True)
        elif action == "pause":
            ctl.pause()
        elif action == "resume":
            ctl.resume()
        elif action == "promote":
            ctl.promote()
        elif action == "rollback":
            ctl.rollback(detail=RollbackIn.model_validate(body or {}).reason, reason="manual")
        else:
            raise ApiError(
                404,
                f"Unknown canary action {action!r}; use start, set-weight, pause, resume, "
                "promote or rollback.",
                code="unknown_action",
            )
    except CanaryError as exc:
        raise ApiError(409, str(exc), code="canary_conflict") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        raise ApiError(
            422, f"Invalid field {field}: {first['msg']}.", code="invalid_field"
        ) from None
    await rollout.tick()
    return {"route": route, **ctl.snapshot(), "weights": ctl.weights()}


@router.post("/jobs/curate")
async def curate_job(request: Request) -> dict[str, Any]:
    """Curate a route now (in a worker thread) and answer with the report."""
    from curation.job import NoRowsError, run_curation
    from curation.report import result_to_json

    state = proxy_state(request)
    route = _route(request, (await _json_body(request)).get("route"))
    await state.logbook.flush()
    await state.logbook.seal()
    try:
        result = await asyncio.to_thread(run_curation, state.config.data_dir, route)
    except NoRowsError as exc:
        raise ApiError(409, str(exc), code="no_rows") from None
    return result_to_json(result)


@router.post("/jobs/retrain")
async def retrain_job(request: Request) -> dict[str, Any]:
    """Curate and retrain a route in a child process, at the scheduler's next tick."""
    state = proxy_state(request)
    route = _route(request, (await _json_body(request)).get("route"))
    if state.scheduler is None:
        raise ApiError(409, "The scheduler is not running in this server.", code="no_scheduler")
    await state.logbook.flush()
    await state.logbook.seal()
    started = state.scheduler.trigger(route.name)
    return {"route": route.name, "queued": started}


@router.get("/students")
async def students(request: Request) -> dict[str, Any]:
    """Registered students of every route."""
    from retrain.registry import list_students

    data_dir = proxy_state(request).config.data_dir
    return {"students": [s.as_dict() for s in list_students(data_dir)]}


def _rollout(request: Request) -> Rollout:
    rollout = proxy_state(request).rollout
    if rollout is None:
        raise ApiError(409, "Canary control is not running in this server.", code="no_rollout")
    return rollout


def _route(request: Request, name: Any) -> RouteConfig:
    state = proxy_state(request)
    if not isinstance(name, str) or name not in state.routes:
        known = ", ".join(sorted(state.routes))
        raise ApiError(404, f"Unknown route {name!r}; routes: {known}.", code="route_not_found")
    return state.routes[name]


def _check_registered(request: Request, route: str, version: str) -> None:
    from retrain.registry import list_students

    for student in list_students(proxy_state(request).config.data_dir, route):
        if f"v{student.version}" == version:
            if student.status == "rejected":
                raise ApiError(
                    400,
                    f"Student {version} of route {route!r} was rejected by its gate "
                    f"(exact match {student.exact_match}); it cannot take traffic.",
                    code="student_rejected",
                )
            return
    raise ApiError(
        400,
        f"Route {route!r} has no registered student {version}; `apprentice students list` "
        "shows them.",
        code="student_not_found",
    )


async def _json_body(request: Request) -> dict[str, Any]:
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


@router.get("/jobs")
async def jobs(request: Request) -> dict[str, Any]:
    """The retrain schedule per route: whether a job runs now, runs so far, the last outcome."""
    scheduler = proxy_state(request).scheduler
    if scheduler is None:
        return {"routes": {}}
    return {
        "routes": {
            name: {
                "running": state.running is not None,
                "runs": state.runs,
                "last_run_at": state.last_run_at,
                "last_failed": state.last_failed,
                "asked": state.forced,
            }
            for name, state in scheduler.routes.items()
        }
    }
