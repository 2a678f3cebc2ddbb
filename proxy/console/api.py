"""/ui/api: what the console's pages read and do, behind its session cookie.

Reads and controls go through the admin API's own handlers (`proxy.admin`,
`proxy.admin_canary`, `proxy.admin_jobs`), called with the same request: a control from the
console is the same control as `apprentice canary ...`, stored in the control plane, so any
replica serves the console. Only what the admin API has no reader for lives here: the log's
traffic and requests, one student's reports, a route's live cascade and drift figures.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from proxy import admin, admin_canary, admin_jobs
from proxy.console import queries
from proxy.console.figures import cascade_figures, drift_figures
from proxy.console.session import Session, require_control, require_session
from proxy.errors import ApiError
from proxy.state import proxy_state
from retrain.students import show_student

router = APIRouter(prefix="/ui/api", dependencies=[Depends(require_session)])


@router.get("/session")
async def session(found: Annotated[Session, Depends(require_session)]) -> dict[str, Any]:
    """The CSRF token the page sends back with each control, and when the session ends."""
    return {"csrf": found.csrf, "expires": found.expires}


@router.get("/overview")
async def overview(request: Request, window: str = Query("hour")) -> dict[str, Any]:
    """The Routes page: each route's teacher, canary and traffic over the window."""
    if window not in queries.WINDOWS:
        raise ApiError(400, "window must be 'hour' or 'day'.", param="window")
    state = proxy_state(request)
    routes = (await admin.list_routes(request))["routes"]
    canary = await _canary_or_none(request)
    seen = await queries.traffic(state.logbook, state.settings.data_dir, state.pricer, window)
    for route in routes:
        route["canary"] = canary.get(route["name"])
        route["traffic"] = seen["routes"].get(route["name"])
    return {"window": window, "routes": routes}


@router.get("/routes/{route}")
async def route_detail(request: Request, route: str) -> dict[str, Any]:
    """The Route page: the canary, predicted against live cascade, drift against thresholds."""
    name = admin.route_named(request, route).name
    state = proxy_state(request)
    canary = await _canary_or_none(request)
    loop = request.app.state.canary
    return {
        "route": name,
        # Drift is scored by the leader only: elsewhere the page says so beside the thresholds.
        "leading": None if loop is None else loop.leading,
        "canary": canary.get(name),
        "cascade": cascade_figures(state.metrics, name),
        "drift": drift_figures(state.metrics, name),
    }


@router.get("/canary")
async def canary_status(request: Request) -> dict[str, Any]:
    return await admin_canary.canary_status(request)


@router.post("/canary/{route}/{action}", dependencies=[Depends(require_control)])
async def canary_action(request: Request, route: str, action: str) -> dict[str, Any]:
    """The admin API's control, as is: refusals come back as its errors, with their reason."""
    return await admin_canary.canary_action(request, route, action)


@router.get("/students")
async def students(request: Request) -> dict[str, Any]:
    return await admin.students(request)


@router.get("/students/{route}/{version}")
async def student(request: Request, route: str, version: str) -> dict[str, Any]:
    """The Student page: manifest, eval report (slices, cascade, worst cases), training
    curve, and the curation report of the dataset it learned from."""
    name = admin.route_named(request, route).name
    number = version.removeprefix("v")
    if not number.isdigit():
        raise ApiError(404, f"No student {version!r}; versions look like v3.", code="not_found")
    shared = proxy_state(request).settings.data_dir
    try:
        shown = show_student(shared, name, int(number))
    except FileNotFoundError as exc:
        raise ApiError(404, str(exc), code="student_not_found") from None
    folder = Path(shown["path"])
    dataset = shown["manifest"].get("dataset_version")
    shown["history"] = _json_file(folder / "history.json") or []
    manifest = None
    if isinstance(dataset, int):
        manifest = _json_file(shared / "datasets" / name / f"v{dataset}" / "manifest.json")
    shown["dataset"] = None if manifest is None else _dataset_summary(dataset, manifest)
    return shown


@router.get("/log/{route}")
async def log(
    request: Request,
    route: str,
    served_by: str | None = Query(None, max_length=64),
    outcome: str | None = Query(None, max_length=64),
    endpoint: str | None = Query(None, max_length=128),
    limit: int = Query(50, ge=1, le=500),
) -> dict[str, Any]:
    """The Log page: the route's recent requests, filtered."""
    name = admin.route_named(request, route).name
    state = proxy_state(request)
    query = queries.LogQuery(name, served_by or None, outcome or None, endpoint or None, limit)
    rows = await queries.recent(state.logbook, state.settings.data_dir, query)
    return {"route": name, "requests": rows}


@router.get("/requests/{request_id}")
async def one_request(request: Request, request_id: str) -> dict[str, Any]:
    """One logged request as stored (redacted when it was written), with its feedback."""
    state = proxy_state(request)
    row = await queries.one_request(state.logbook, state.settings.data_dir, request_id)
    if row is None:
        raise ApiError(404, f"No logged request {request_id!r}.", code="request_not_found")
    return row


@router.get("/jobs")
async def jobs(request: Request) -> dict[str, Any]:
    """The Jobs page: the schedule per route, and the datasets and students it made."""
    shared = proxy_state(request).settings.data_dir
    status = await admin_jobs.jobs(request)
    students_by_route: dict[str, list[dict[str, Any]]] = {}
    for found in (await admin.students(request))["students"]:
        students_by_route.setdefault(found["route"], []).append(found)
    routes = {}
    for route in proxy_state(request).settings.routes:
        routes[route.name] = {
            "schedule": status["routes"].get(route.name),
            "datasets": _datasets(shared, route.name),
            "students": students_by_route.get(route.name, [])[-5:][::-1],
        }
    return {"routes": routes}


@router.post("/jobs/{kind}", dependencies=[Depends(require_control)])
async def run_job(request: Request, kind: str) -> dict[str, Any]:
    """Curate now, or curate and retrain: the admin API's job triggers, as is."""
    if kind == "curate":
        return await admin_jobs.curate_job(request)
    if kind == "retrain":
        return await admin_jobs.retrain_job(request)
    raise ApiError(404, f"Unknown job {kind!r}; use curate or retrain.", code="unknown_job")


async def _canary_or_none(request: Request) -> dict[str, Any]:
    """Each route's canary view, or {} where this server runs no canary."""
    if request.app.state.canary is None:
        return {}
    routes: dict[str, Any] = (await admin_canary.canary_status(request))["routes"]
    return routes


def _datasets(shared: Path, route: str, last: int = 5) -> list[dict[str, Any]]:
    """The route's newest dataset versions: their sizes and stage counts."""
    root = shared / "datasets" / route
    if not root.exists():
        return []
    found = []
    for folder in root.iterdir():
        number = folder.name.removeprefix("v")
        manifest = _json_file(folder / "manifest.json") if number.isdigit() else None
        if manifest is not None:
            found.append((int(number), manifest))
    found.sort(key=lambda item: item[0])
    return [_dataset_summary(v, m) for v, m in found[-last:][::-1]]


def _dataset_summary(version: int, manifest: dict[str, Any]) -> dict[str, Any]:
    keep = ("created_at", "counts", "stages")
    return {"version": f"v{version}", **{k: manifest[k] for k in keep if k in manifest}}


def _json_file(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
