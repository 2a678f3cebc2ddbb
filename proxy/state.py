"""The objects a running proxy shares, created in the app's lifespan and found on app.state."""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass

from starlette.requests import Request

from apprentice.config import Config, RouteConfig
from apprentice.logbook import Logbook
from apprentice.scheduler import Scheduler
from monitoring.metrics import Metrics
from proxy.auth import Auth
from proxy.errors import ApiError
from proxy.exchange import Accounting
from proxy.rollout import Rollout
from proxy.student_backend import StudentPool
from proxy.teacher import Teacher


@dataclass
class ProxyState:
    config: Config
    metrics: Metrics
    logbook: Logbook
    teacher: Teacher
    accounting: Accounting
    auth: Auth
    rollout: Rollout | None = None
    scheduler: Scheduler | None = None
    students: StudentPool | None = None

    def __post_init__(self) -> None:
        self.background: set[asyncio.Task[None]] = set()  # shadow comparisons in flight
        self.loops: list[asyncio.Task[None]] = []  # the rollout and scheduler loops
        self.stop = asyncio.Event()
        self.routes = {route.name: route for route in self.config.routes}
        self.catch_all = next((r for r in self.config.routes if r.any_model), None)

    def route_for(self, model: str) -> RouteConfig:
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
