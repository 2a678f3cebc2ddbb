"""The ASGI application: routers, error handlers, and the lifespan that owns shared objects.

The shell composes the proxy with the stages it serves beside: `create_app` takes a factory
of `Backends` (logbook, canary loop, drift, jobs), entered in the lifespan before the proxy
builds its own objects and left after they are closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from monitoring.metrics import Metrics
from proxy import admin, admin_canary, admin_jobs, console, feedback, health
from proxy.accounting import Pricer
from proxy.auth import Auth
from proxy.chat import chat_completions
from proxy.count_tokens import count_tokens
from proxy.errors import (
    ApiError,
    error_response,
    handle_api_error,
    handle_http_exception,
    handle_validation_error,
)
from proxy.messages import messages
from proxy.misdirected import PASSTHROUGH_METHODS, doubled_v1, method_not_allowed
from proxy.passthrough import passthrough
from proxy.redaction import MIN_LENGTH, Redactor
from proxy.responses import responses
from proxy.routing import Router
from proxy.settings import ProxySettings, RouteSettings
from proxy.state import Backends, ProxyState, new_request_id
from proxy.student_backend import StudentPool
from proxy.student_remote import RemoteStudent
from proxy.teacher import Teacher
from proxy.upstream_client import HttpClient

log = logging.getLogger("apprentice.proxy")
BackendsFactory = Callable[[], contextlib.AbstractAsyncContextManager[Backends]]


def create_app(settings: ProxySettings, metrics: Metrics, backends: BackendsFactory) -> FastPath:
    """The proxy. Shared objects are built when the app starts, not here."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with backends() as given:
            state = await _start(settings, metrics, given)
            app.state.proxy = state
            app.state.canary = given.canary
            app.state.jobs = given.jobs
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
    for module in (feedback, health, admin, admin_canary, admin_jobs):
        app.include_router(module.router)
    app.include_router(admin_canary.cluster_router)
    console.include(app)
    app.add_exception_handler(ApiError, handle_api_error)
    app.add_exception_handler(HTTPException, handle_http_exception)
    app.add_exception_handler(RequestValidationError, handle_validation_error)
    app.add_middleware(RequestIdMiddleware)
    return FastPath(app, metrics)


async def _start(settings: ProxySettings, metrics: Metrics, backends: Backends) -> ProxyState:
    server, routes = settings.server, settings.routes
    if not server.api_keys:
        log.warning("server.api_keys is empty: any client can call this proxy")
    redactor = Redactor(_secrets(settings))
    if redactor.too_short:
        log.warning(
            "%d configured secrets are shorter than %d characters: they cannot be told from "
            "ordinary text, so they are not redacted from answers and rows; use longer keys",
            len(redactor.too_short), MIN_LENGTH,
        )  # fmt: skip
    students_http = None  # aiohttp's client, for the remote students only (not the hot path)
    if any(r.student_api_base is not None for r in routes):
        students_http = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=1000, limit_per_host=0, keepalive_timeout=30),
            auto_decompress=False,
            skip_auto_headers=("user-agent",),
        )
    if any(not r.passthrough for r in routes):
        # litellm takes seconds to import; do it now, off the event loop, not on a request.
        asyncio.get_running_loop().run_in_executor(None, _import_litellm)
    router = None
    if backends.canary is not None and backends.traffic is not None:
        router = Router(backends.canary.controllers, backends.traffic)
    state = ProxyState(
        settings=settings,
        metrics=metrics,
        logbook=backends.logbook,
        teacher=Teacher(HttpClient(keepalive_s=30), metrics, redactor),
        redactor=redactor,
        pricer=await asyncio.to_thread(Pricer.load, routes),
        auth=Auth(
            [k.get_secret_value() for k in server.api_keys],
            None if server.admin_token is None else server.admin_token.get_secret_value(),
        ),
        students=StudentPool(settings.data_dir, settings.students, _remotes(routes, students_http)),
        router=router,
        drift=backends.drift,
        owners=backends.owners,
        student_http=students_http,
    )
    # Everything imported so far lives as long as the server: keep it out of the cyclic
    # collector's full passes, which otherwise scan it again and again on the request path.
    gc.collect()
    gc.freeze()
    return state


def _secrets(settings: ProxySettings) -> list[str]:
    """Every secret the proxy knows: none may leave it in an answer, an error or a row."""
    server, routes = settings.server, settings.routes
    secrets = [k.get_secret_value() for k in server.api_keys]
    secrets += [r.teacher_api_key.get_secret_value() for r in routes if r.teacher_api_key]
    secrets += [r.student_api_key.get_secret_value() for r in routes if r.student_api_key]
    if server.admin_token is not None:
        secrets.append(server.admin_token.get_secret_value())
    return secrets


def _remotes(
    routes: list[RouteSettings], session: aiohttp.ClientSession | None
) -> dict[str, Callable[[int], RemoteStudent]]:
    """Factories of remote students for the routes that serve them from a URL."""
    out: dict[str, Callable[[int], RemoteStudent]] = {}
    for route in routes:
        if route.student_api_base is None:
            continue

        def factory(version: int, route: RouteSettings = route) -> RemoteStudent:
            assert route.student_api_base is not None and session is not None
            key = route.student_api_key
            return RemoteStudent(
                session,
                name=route.name,
                base_url=route.student_api_base,
                model=route.student_model.format(route=route.name, version=version),
                api_key=None if key is None else key.get_secret_value(),
                timeout_s=route.student_timeout_s,
            )

        out[route.name] = factory
    return out


async def _stop(state: ProxyState) -> None:
    gc.unfreeze()  # let interpreter shutdown collect what start froze
    if state.background:  # shadow comparisons already started finish and are logged
        await asyncio.wait(state.background, timeout=30)
    await state.teacher.close()
    await state.students.close()
    if state.student_http is not None:
        await state.student_http.close()


def _import_litellm() -> None:
    import litellm  # noqa: F401


# The surfaces with their own handler (POST only); every other /v1 call passes through.
SURFACES: dict[str, Callable[[Request], Awaitable[Response]]] = {
    "/v1/chat/completions": chat_completions,
    "/v1/responses": responses,
    "/v1/messages": messages,
    "/v1/messages/count_tokens": count_tokens,
}
# Other methods a surface's path takes (passed through): OpenAI's stored chat completions.
SURFACE_METHODS = {"/v1/chat/completions": frozenset({"GET", "POST"})}
POST_ONLY = frozenset({"POST"})
LOCAL = frozenset({"/v1/models", "/v1/feedback"})  # /v1 paths the proxy answers itself
AZURE = "/openai/deployments/"


class FastPath:
    """The API surfaces straight to their handlers; everything else through FastAPI.

    FastAPI's middleware stack (telemetry, body limit, exit stack, exception middleware,
    router) costs the hot path a few hundred microseconds a request for nothing it uses.
    Azure-style paths (`/openai/deployments/{deployment}/...?api-version=...`) reach the same
    handlers, the deployment naming the route."""

    def __init__(self, app: FastAPI, metrics: Metrics) -> None:
        self.app = app
        self.state = app.state
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler = self._handler(scope) if scope["type"] == "http" else None
        if handler is None:
            await self.app(scope, receive, send)
            return
        scope["app"] = self.app
        request_id = new_request_id()
        scope.setdefault("state", {})["request_id"] = request_id
        try:
            response = await handler(Request(scope, receive, send))
        except ApiError as exc:
            response = error_response(exc)
        except Exception:  # a bug before the request had a route: 500, counted and logged
            log.exception("%s %s failed", scope["path"], request_id)
            self.metrics.requests.labels("-", "proxy", "error").inc()
            response = error_response(
                ApiError(500, "apprentice failed on this request; see its log.", "server_error",
                         code="internal_error")
            )  # fmt: skip
        await response(scope, receive, _with_ids(send, request_id))

    def _handler(self, scope: Scope) -> Callable[[Request], Awaitable[Response]] | None:
        path: str = scope["path"]
        if path.startswith("/openai/"):
            path = _azure(scope, path)
        method = scope["method"]
        if path in SURFACES:
            if method == "POST":
                return SURFACES[path]
            allowed = SURFACE_METHODS.get(path, POST_ONLY)
            if method not in allowed:
                return functools.partial(method_not_allowed, allowed=allowed)
        if path.startswith("/v1/") and path not in LOCAL:
            if path.startswith("/v1/v1/"):
                return doubled_v1
            if method not in PASSTHROUGH_METHODS:
                return functools.partial(method_not_allowed, allowed=PASSTHROUGH_METHODS)
            return passthrough
        return None


def _azure(scope: Scope, path: str) -> str:
    """Azure OpenAI's paths as /v1 paths: `/openai/deployments/{deployment}/...` (the
    deployment naming the route), and `/openai/...` or `/openai/v1/...` (the Responses API
    and Azure's v1 API, the body naming the model). `api-version` is not needed here."""
    if path.startswith(AZURE):
        deployment, _, rest = path.removeprefix(AZURE).partition("/")
        if not deployment or not rest:
            return path
        scope.setdefault("state", {})["deployment"] = deployment
    else:
        rest = path.removeprefix("/openai/").removeprefix("v1/")
    path = scope["path"] = f"/v1/{rest}"
    return path


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
