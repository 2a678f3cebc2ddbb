"""/admin/jobs: curate a route now, or curate and retrain it in a child process (its handler,
a `Jobs`, is found on app.state.jobs; the shell provides it)."""

from __future__ import annotations

from typing import Any, Protocol

from fastapi import APIRouter, Depends, Request

from logbook.writer import SealFailed
from proxy.admin import json_body, require_admin, route_named
from proxy.errors import ApiError

router = APIRouter(prefix="/admin/jobs", dependencies=[Depends(require_admin)])


class JobRefused(Exception):
    """A job that cannot run now; `code` is the error code the client sees (409)."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


class Jobs(Protocol):
    async def curate(self, route: str) -> dict[str, Any]:
        """Seal what is queued and curate the route now; the curation report."""
        ...

    async def retrain(self, route: str) -> dict[str, Any]:
        """Seal what is queued and ask the scheduler to curate and retrain the route."""
        ...

    def status(self) -> dict[str, Any]:
        """Per route: whether a job runs now, runs so far, the last outcome."""
        ...


@router.post("/curate")
async def curate_job(request: Request) -> dict[str, Any]:
    """Curate a route now (in a worker thread) and answer with the report."""
    route = route_named(request, (await json_body(request)).get("route"))
    try:
        return await _jobs(request).curate(route.name)
    except JobRefused as exc:
        raise ApiError(409, str(exc), code=exc.code) from None
    except SealFailed as exc:  # both seal first: the job must read every answered row
        raise ApiError(503, f"{exc}.", "server_error", code="seal_failed") from None


@router.post("/retrain")
async def retrain_job(request: Request) -> dict[str, Any]:
    """Curate and retrain a route in a child process, at the scheduler's next tick."""
    route = route_named(request, (await json_body(request)).get("route"))
    try:
        return await _jobs(request).retrain(route.name)
    except JobRefused as exc:
        raise ApiError(409, str(exc), code=exc.code) from None
    except SealFailed as exc:  # both seal first: the job must read every answered row
        raise ApiError(503, f"{exc}.", "server_error", code="seal_failed") from None


@router.get("")
async def jobs(request: Request) -> dict[str, Any]:
    """The retrain schedule per route: whether a job runs now, runs so far, the last outcome."""
    handler: Jobs | None = request.app.state.jobs
    return {"routes": {}} if handler is None else handler.status()


def _jobs(request: Request) -> Jobs:
    handler: Jobs | None = request.app.state.jobs
    if handler is None:
        raise ApiError(409, "This server runs no jobs.", code="no_scheduler")
    return handler
