"""The objects the request path shares, created in the app's lifespan and found on app.state.

Objects other stages own (the logbook, the canary loop's controllers, drift, the job runner)
come from the shell as `Backends`; the proxy builds its own (teacher client, auth, students).
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from starlette.requests import Request

from logbook.writer import Logbook
from monitoring.drift_monitor import DriftMonitor
from monitoring.metrics import Metrics
from proxy.accounting import Accounting, Pricer
from proxy.auth import Auth
from proxy.cascade import Cascade
from proxy.errors import ApiError
from proxy.redaction import Redactor
from proxy.routing import Router, Traffic
from proxy.settings import ProxySettings, RouteSettings
from proxy.student_backend import StudentPool
from proxy.teacher import Teacher

if TYPE_CHECKING:
    import aiohttp

    from canary.loop import CanaryLoop
    from cluster.objects import ObjectOwners
    from proxy.admin_jobs import Jobs


@dataclass
class Backends:
    """What the shell hands the proxy: the objects of the stages it serves beside."""

    logbook: Logbook
    traffic: Traffic | None = None  # the canary's interval counters; None: no canary here
    canary: CanaryLoop | None = None
    drift: DriftMonitor | None = None
    jobs: Jobs | None = None
    owners: ObjectOwners | None = None  # who created each stored response and file


@dataclass
class ProxyState:
    settings: ProxySettings
    metrics: Metrics
    logbook: Logbook
    teacher: Teacher
    pricer: Pricer
    auth: Auth
    students: StudentPool
    redactor: Redactor
    router: Router | None = None
    drift: DriftMonitor | None = None
    owners: ObjectOwners | None = None
    background: set[asyncio.Task[None]] = field(default_factory=set)  # shadows in flight
    student_http: aiohttp.ClientSession | None = None  # remote students' client, if any

    def __post_init__(self) -> None:
        self.accounting = Accounting(self.metrics, self.pricer)
        self.cascade = Cascade(self.settings.data_dir, self.metrics)
        self.routes = {route.name: route for route in self.settings.routes}
        self.catch_all = next((r for r in self.settings.routes if r.any_model), None)

    def route_for(self, model: str) -> RouteSettings:
        """The route a `model` name selects; 404 in OpenAI's shape when there is none."""
        route = self.routes.get(model) or self.catch_all
        if route is None:
            known = ", ".join(sorted(self.routes)) or "none configured"
            raise ApiError(
                404,
                f"The model {model!r} does not exist on this proxy; known models: {known}.",
                code="model_not_found",
                param="model",
            )
        return route


def proxy_state(request: Request) -> ProxyState:
    state: ProxyState = request.app.state.proxy
    return state


def new_request_id() -> str:
    """Time-ordered and unique: sorting ids sorts requests by arrival."""
    return f"req_{time.time_ns():x}{os.urandom(5).hex()}"
