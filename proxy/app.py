"""The ASGI application: routers, error handlers, and the lifespan that owns shared objects."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator, Callable

import aiohttp
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from apprentice.config import Config, RouteConfig
from apprentice.logbook import Logbook
from apprentice.scheduler import Scheduler
from monitoring.drift_monitor import DriftReport
from monitoring.metrics import Metrics
from proxy import admin, feedback, health
from proxy.auth import Auth
from proxy.chat import chat_completions
from proxy.errors import (
    ApiError,
    error_response,
    handle_api_error,
    handle_http_exception,
    handle_validation_error,
)
from proxy.exchange import Accounting, Pricer
from proxy.rollout import Rollout
from proxy.state import ProxyState, new_request_id
from proxy.student_backend import StudentPool, StudentSettings
from proxy.student_remote import RemoteStudent
from proxy.teacher import Teacher
from retrain.registry import list_students

log = logging.getLogger("apprentice.proxy")


def create_app(config: Config, metrics: Metrics | None = None) -> FastPath:
    """The proxy for `config`. Shared objects are built when the app starts, not here."""
    metrics = metrics or Metrics()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = await _start(config, metrics)
        app.state.proxy = state
        try:
            yield
        finally:
            await _stop(state)

    app = FastAPI(
        title="apprentice",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    # The hot path is a plain Starlette route: no dependency solving, no body model.
    app.router.routes.append(Route("/v1/chat/completions", chat_completions, methods=["POST"]))
    app.include_router(feedback.router)
    app.include_router(health.router)
    app.include_router(admin.router)
    app.add_exception_handler(ApiError, handle_api_error)
    app.add_exception_handler(HTTPException, handle_http_exception)
    app.add_exception_handler(RequestValidationError, handle_validation_error)
    app.add_middleware(RequestIdMiddleware)
    return FastPath(app)


async def _start(config: Config, metrics: Metrics) -> ProxyState:
    if not config.server.api_keys:
        log.warning("server.api_keys is empty: any client can call this proxy")
    secrets = [k.get_secret_value() for k in config.server.api_keys]
    secrets += [r.teacher_api_key.get_secret_value() for r in config.routes if r.teacher_api_key]
    secrets += [r.student_api_key.get_secret_value() for r in config.routes if r.student_api_key]
    admin_token = config.server.admin_token
    if admin_token is not None:
        secrets.append(admin_token.get_secret_value())
    client = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=1000, limit_per_host=0, keepalive_timeout=30),
        auto_decompress=False,
        skip_auto_headers=("user-agent",),
    )
    logbook = Logbook(config.data_dir, config.logbook, metrics)
    await logbook.open()
    if any(not r.passthrough or r.input_cost_per_mtok is None for r in config.routes):
        # litellm takes seconds to import; do it now, off the event loop, not on a request.
        asyncio.get_running_loop().run_in_executor(None, _import_litellm)
    rollout = Rollout(config, logbook, metrics, lambda route: list_students(config.data_dir, route))
    await rollout.open()
    scheduler = Scheduler(config, metrics)
    state = ProxyState(
        config=config,
        metrics=metrics,
        logbook=logbook,
        teacher=Teacher(client, metrics, secrets),
        accounting=Accounting(metrics, Pricer(), observe_prompt=rollout.observe_prompt),
        auth=Auth(
            [k.get_secret_value() for k in config.server.api_keys],
            None if admin_token is None else admin_token.get_secret_value(),
        ),
        rollout=rollout,
        scheduler=scheduler,
        students=StudentPool(
            config.data_dir,
            StudentSettings(
                num_threads=config.students.num_threads,
                batch_window_ms=config.students.batch_window_ms,
                max_batch_size=config.students.max_batch_size,
                max_tokens_limit=config.students.max_tokens,
            ),
            remotes=_remote_students(config, client),
        ),
    )
    state.loops = [asyncio.create_task(rollout.run(state.stop))]
    if any(r.retrain.schedule for r in config.routes):
        state.loops.append(asyncio.create_task(scheduler.run(state.stop)))
    rollout.on_drift = lambda report: _retrain_on_drift(scheduler, report)
    # Everything imported so far lives as long as the server: keep it out of the cyclic
    # collector's full passes, which otherwise scan it again and again on the request path.
    gc.collect()
    gc.freeze()
    return state


def _remote_students(
    config: Config, session: aiohttp.ClientSession
) -> dict[str, Callable[[int], RemoteStudent]]:
    """Factories of remote students for the routes that serve them from a URL."""
    out: dict[str, Callable[[int], RemoteStudent]] = {}
    for route in config.routes:
        if route.student_api_base is None:
            continue

        def factory(version: int, route: RouteConfig = route) -> RemoteStudent:
            assert route.student_api_base is not None
            key = route.student_api_key
            return RemoteStudent(
                session,
                name=route.name,
                base_url=route.student_api_base,
                model=route.student_model.format(route=route.name, version=version),
                api_key=None if key is None else key.get_secret_value(),
                timeout_s=route.canary.student_timeout_s,
            )

        out[route.name] = factory
    return out


def _retrain_on_drift(scheduler: Scheduler, report: DriftReport) -> None:
    if report.trigger_retrain:
        scheduler.trigger(report.route)


async def _stop(state: ProxyState) -> None:
    gc.unfreeze()  # let interpreter shutdown collect what start froze
    state.stop.set()
    for task in state.loops:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    if state.background:  # shadow comparisons already started finish and are logged
        await asyncio.wait(state.background, timeout=30)
    if state.rollout is not None:
        await state.rollout.tick()  # persist the last transitions
    await state.logbook.close()
    await state.teacher.client.close()
    if state.students is not None:
        await state.students.close()


def _import_litellm() -> None:
    import litellm  # noqa: F401


class FastPath:
    """POST /v1/chat/completions straight to its handler; everything else through FastAPI.

    FastAPI's middleware stack (telemetry, body limit, exit stack, exception middleware,
    router) costs the hot path a few hundred microseconds a request for nothing it uses."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.state = app.state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not (
            scope["type"] == "http"
            and scope["method"] == "POST"
            and scope["path"] == "/v1/chat/completions"
        ):
            await self.app(scope, receive, send)
            return
        scope["app"] = self.app
        request_id = new_request_id()
        scope.setdefault("state", {})["request_id"] = request_id
        try:
            response = await chat_completions(Request(scope, receive, send))
        except ApiError as exc:
            response = error_response(exc)
        except Exception:  # the boundary: a bug answers 500 in OpenAI's shape, once logged
            log.exception("chat completion %s failed", request_id)
            response = error_response(
                ApiError(500, "apprentice failed on this request; see its log.", "server_error",
                         code="internal_error")
            )  # fmt: skip
        await response(scope, receive, _with_ids(send, request_id))


def _with_ids(send: Send, request_id: str) -> Send:
    async def send_with_ids(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers", []))
            names = {name.lower() for name, _ in headers}
            if b"x-apprentice-request-id" not in names:
                headers.append((b"x-apprentice-request-id", request_id.encode()))
            if b"x-apprentice-served-by" not in names:
                headers.append((b"x-apprentice-served-by", b"proxy"))
            message["headers"] = headers
        await send(message)

    return send_with_ids


class RequestIdMiddleware:
    """Gives every request an id and every response the x-apprentice-* headers."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = new_request_id()
        scope.setdefault("state", {})["request_id"] = request_id
        await self.app(scope, receive, _with_ids(send, request_id))
