"""Every other OpenAI-compatible call under /v1, passed through to a route's teacher.

Embeddings, legacy completions, moderations, audio, images, files, batches, `GET` and
`DELETE /v1/responses/{id}`...: the call goes to the route its JSON body's `model` names (the
route's teacher model put in), or, for a call that names none (a file upload, a GET), to
`server.default_route` (or the only route). Bytes stream both ways: a body that is not JSON is
sent on as it arrives, and every answer is relayed as it arrives, never held whole.

Every call is a row: endpoint, route, status, latency, key id, and the tokens and cost its
answer reports. Legacy completions are logged as pairs for training; other bodies are kept when
they are JSON and no larger than the route's `passthrough_body_limit`, and never when binary.
`GET /v1/models/{id}` is answered here: the proxy's models are its routes.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import unquote

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from logbook.surfaces import COMPLETIONS, completions_request_to_chat
from proxy.errors import ApiError
from proxy.exchange import Exchange, build_row, now_utc, session_hash
from proxy.ownership import bind_created, check_access, lists_files, own_files
from proxy.settings import RouteSettings
from proxy.state import ProxyState, proxy_state
from proxy.surface import (
    REQUEST_ID,
    SERVED_BY,
    ClientGone,
    read_body,
    too_deep,
    until_answered,
)
from proxy.teacher import Upstream, openai_url

FORWARDED = ("content-type", "accept", "openai-beta")
# An id in a path: `file-abc123`, `resp_68a...`, a uuid; a word such as `fine_tuning` is not.
_ID = re.compile(r"^[A-Za-z]+[-_](?=[A-Za-z0-9_-]*\d)[A-Za-z0-9_-]{6,}$|^[0-9a-f-]{16,}$")
# Endpoint families counted in metrics; any other path is "other" (a client's path is not a
# label value: labels stay bounded).
FAMILIES = frozenset({
    "embeddings", "completions", "moderations", "audio", "images", "files", "uploads",
    "batches", "responses", "models", "vector_stores", "assistants", "threads", "fine_tuning",
    "realtime", "evals", "containers", "conversations",
})  # fmt: skip


async def passthrough(request: Request) -> Response:
    """Relay one call to the chosen route's teacher and log it."""
    t0, started = time.perf_counter(), now_utc()
    state = proxy_state(request)
    try:
        key = state.auth.client(request)
    except ApiError as exc:
        state.metrics.client_errors.labels(exc.code or "invalid_request").inc()
        raise
    endpoint = confined(request, state)
    if request.method == "GET" and endpoint.startswith("models/"):
        return _model(state, endpoint.removeprefix("models/"))
    await check_access(state, endpoint, key)
    is_json = request.headers.get("content-type", "").startswith("application/json")
    body: bytes | None = None
    payload: dict[str, Any] = {}
    if is_json and request.method in ("POST", "PUT", "PATCH"):
        body = await read_body(request, state.settings.server)
        payload = _json(body)
    route, model = _route(state, request, payload)
    if not route.passthrough:
        raise ApiError(
            400,
            f"Route {route.name!r} reaches its teacher ({route.teacher}) through litellm; "
            f"/v1/{endpoint} passes through only to OpenAI-compatible teachers.",
            code="unsupported_endpoint",
        )
    if body is not None and model is not None:
        body = orjson.dumps(payload | {"model": model})
    sent_model = model or (payload.get("model") if isinstance(payload.get("model"), str) else None)
    exchange = Exchange(
        request_id=request.scope["state"]["request_id"], route=route, started_at=started,
        priced_model=sent_model,
        payload=payload, request_body=body or b"", stream=payload.get("stream") is True,
        endpoint=_template(endpoint), key_id=key, task=request.headers.get("x-apprentice-task"),
        session_hash=session_hash(request.headers.get("x-apprentice-session")),
        chat=completions_request_to_chat(payload) if endpoint == COMPLETIONS else None,
        capture=route.capture and request.headers.get("x-apprentice-capture", "") != "off",
    )  # fmt: skip
    return await _relayed(request, state, exchange, endpoint, body, t0)


async def _relayed(
    request: Request,
    state: ProxyState,
    exchange: Exchange,
    endpoint: str,
    body: bytes | None,
    t0: float,
) -> Response:
    """The call sent on to the route's teacher, its answer relayed as it arrives."""
    route, key = exchange.route, exchange.key_id
    url = openai_url(route, endpoint) + (f"?{request.url.query}" if request.url.query else "")
    headers = {k: v for k, v in request.headers.items() if k in FORWARDED}
    if route.teacher_api_key is not None:
        headers["authorization"] = f"Bearer {route.teacher_api_key.get_secret_value()}"
    headers["accept-encoding"] = "identity"
    body_read = asyncio.Event()
    sent: bytes | AsyncIterator[bytes] | None = body
    if body is None and request.method not in ("GET", "DELETE", "HEAD"):
        sent = _stream(request, body_read)  # an upload streams on as it arrives
    else:
        body_read.set()
    listing = lists_files(state, request.method, endpoint, key)  # filtered whole, not relayed
    try:
        upstream = await until_answered(
            request,
            state.teacher.send(route, url, sent, headers, not listing and "relay", request.method),
            body_read,
        )
    except ClientGone:  # the client left while the teacher worked: still a row
        exchange.status, exchange.outcome = 499, "client_disconnected"
        log_call(state, exchange, t0, kept=False)
        return Response(status_code=499)  # nobody is listening; uvicorn drops it
    if listing and key is not None and upstream.status == 200 and upstream.body is not None:
        upstream.body = await own_files(state, key, upstream.body)
    return Relay(state, exchange, upstream, t0)


def confined(request: Request, state: ProxyState) -> str:
    """The endpoint (the path after /v1/), or a 400 in the caller's shape when it could leave
    the teacher's base URL: a `.` or `..` segment, decoded as often as it was percent-encoded
    (any case, twice or more), would take the teacher's key to any path on its host."""
    endpoint = decoded = request.url.path.removeprefix("/v1/")
    for _ in range(5):
        decoded, before = unquote(decoded), decoded
        if decoded == before:
            break
    segments = decoded.replace("\\", "/").split("/")
    if any(s.split(";", 1)[0].strip() in (".", "..") for s in segments):
        state.metrics.client_errors.labels("invalid_path").inc()
        error = ApiError(
            400,
            f"The path /v1/{endpoint} has '.' or '..' segments (percent-encoded or not) that "
            "would leave the teacher's API; call the endpoint by its plain path.",
            code="invalid_path",
        )
        error.anthropic = "anthropic-version" in request.headers  # an Anthropic SDK's call
        raise error
    return endpoint


def _json(body: bytes) -> dict[str, Any]:
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise ApiError(400, "The request body is not valid JSON.", code="invalid_json") from None
    if not isinstance(payload, dict) or too_deep(body, payload):
        raise ApiError(400, "The request body must be a JSON object no deeper than 64 levels.",
                       code="invalid_json")  # fmt: skip
    return payload


def _route(
    state: ProxyState, request: Request, payload: dict[str, Any]
) -> tuple[RouteSettings, str | None]:
    """The route a call goes to, and the model name to put in its body (None: keep it)."""
    deployment = request.scope["state"].get("deployment")
    model = deployment or payload.get("model") or request.query_params.get("model")
    if isinstance(model, str) and model in state.routes:
        route = state.routes[model]
        return route, route.upstream_model
    default = state.settings.server.default_route
    if default is None and len(state.routes) == 1:
        default = next(iter(state.routes))
    if isinstance(model, str) and model:
        if state.catch_all is not None:
            return state.catch_all, None  # a model the route's provider knows: sent as named
        if default is not None:
            return state.routes[default], None
        state.route_for(model)  # the 404 that lists the models
    if default is None:
        raise ApiError(
            400,
            "This call names no model and several routes could take it; set "
            "server.default_route to choose one.",
            code="route_not_chosen",
        )
    return state.routes[default], None


def _template(endpoint: str) -> str:
    """The endpoint with ids replaced (`files/file-abc123/content` -> `files/{id}/content`)."""
    return "/".join("{id}" if _ID.match(part) else part for part in endpoint.split("/"))


async def _stream(request: Request, read: asyncio.Event) -> AsyncIterator[bytes]:
    async for chunk in request.stream():
        yield chunk
    read.set()


def _model(state: ProxyState, name: str) -> Response:
    if name not in state.routes and state.catch_all is None:
        state.route_for(name)  # the 404 that lists the models
    return JSONResponse({"id": name, "object": "model", "created": 0, "owned_by": "apprentice"})


class Relay(Response):
    """The teacher's answer relayed as it arrives; its row is finished when it ends."""

    def __init__(self, state: ProxyState, exchange: Exchange, upstream: Upstream, t0: float):
        self.state, self.exchange, self.upstream, self.t0 = state, exchange, upstream, t0
        self.status_code = upstream.status
        self.background = None
        self.init_headers(
            upstream.headers | {REQUEST_ID: exchange.request_id, SERVED_BY: "teacher"}
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        x = self.exchange
        # Legacy completions are training pairs: their answers are kept like chat's.
        pair = x.endpoint == COMPLETIONS
        limit = x.route.max_response_bytes if pair else x.route.passthrough_body_limit
        keep = self.upstream.headers.get("content-type", "").startswith(
            ("application/json", "text/event-stream")
        )
        x.status, x.error = self.upstream.status, self.upstream.error
        x.outcome = "ok" if self.upstream.status < 400 else "upstream_error"
        await send({"type": "http.response.start", "status": self.status_code,
                    "headers": self.raw_headers})  # fmt: skip
        size, finished = 0, False
        try:
            if self.upstream.chunks is None:
                body = self.upstream.body or b""
                size = len(body)
                x.response_body = body
                finished = self._finish(keep and size <= limit)  # the row, then the answer
                await send({"type": "http.response.body", "body": body})
                return
            async for chunk in self.upstream.chunks:
                if x.ttft_s is None:
                    x.ttft_s = time.perf_counter() - self.t0
                size += len(chunk)
                if keep and size <= limit:
                    x.chunks.append(chunk)
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            finished = self._finish(keep and size <= limit)  # before the answer's end
            await send({"type": "http.response.body", "body": b""})
        except OSError:
            x.outcome = "client_disconnected"
        finally:
            await self.upstream.close()
            if not finished:
                self._finish(keep and size <= limit)

    def _finish(self, kept: bool) -> bool:
        return log_call(self.state, self.exchange, self.t0, kept)


def log_call(state: ProxyState, x: Exchange, t0: float, kept: bool) -> bool:
    """Build, count and queue the row of a finished (or abandoned) call; never raises."""
    if x.chunks and not x.stream:  # a whole JSON body that arrived in pieces
        x.response_body, x.chunks = b"".join(x.chunks), []
    if not kept:
        x.response_body, x.chunks = None, []
    if x.endpoint != COMPLETIONS and len(x.request_body) > x.route.passthrough_body_limit:
        x.request_body = orjson.dumps({"_apprentice": "request body not kept",
                                       "bytes": len(x.request_body)})  # fmt: skip
    x.latency_s = time.perf_counter() - t0
    try:
        row = build_row(x, state.pricer, state.redactor)
        bind_created(state, x, row)
        family = x.endpoint.split("/")[0]
        family = family if family in FAMILIES else "other"
        state.metrics.passthrough.labels(x.route.name, family, x.outcome).inc()
        state.accounting.count(row)
        if x.capture:
            state.logbook.submit(row)
    except Exception:  # capture must never fail an answered request
        state.metrics.capture_failures.inc()
    return True
