"""What every API surface does with a request: check it, pick its route, answer it, log it.

A surface module (chat, responses, messages, passthrough) parses its own request shape and
decides who answers; this module holds the steps they share:

- `begin`: the caller's key, the body (bounded in size and time), the parsed payload and its
  route, and the `Exchange` that gathers the facts of the call;
- `guarded`: a bug is answered 500 in the caller's shape, counted and logged like any answer;
- `finish`: once an answer is complete and before its last byte goes out, its row is built,
  journaled, queued and counted, so an answer a client has received is never missing from the
  log; `finished` is a whole answer's response, finished first;
- `until_answered`: the answer, or `ClientGone` when the client leaves before it is ready (the
  upstream call is cancelled and the row says `client_disconnected`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson
from starlette.requests import Request
from starlette.responses import Response

from proxy.connections import BODY_RECEIVED, DISCONNECTED
from proxy.errors import ApiError
from proxy.exchange import Exchange, build_row, now_utc, session_hash
from proxy.ownership import bind_created
from proxy.relay import RelayResponse
from proxy.settings import ServerSettings
from proxy.shadow import schedule_shadow
from proxy.state import ProxyState, proxy_state
from proxy.teacher import Upstream

log = logging.getLogger("apprentice.proxy")
MAX_DEPTH = 64  # nesting levels a request may have (JSON schemas in tools need a few dozen)
SERVED_BY = "x-apprentice-served-by"
REQUEST_ID = "x-apprentice-request-id"
T = TypeVar("T")


class ClientGone(Exception):
    """The client disconnected before its answer was ready."""


@dataclass
class Begun:
    state: ProxyState
    exchange: Exchange
    t0: float


async def begin(
    request: Request,
    endpoint: str,
    parse: Callable[[bytes, str | None], dict[str, Any]],
    to_chat: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    key: Callable[[ProxyState, Request], str | None] | None = None,
) -> Begun:
    """Authenticate, read, parse and route a request; errors raise ApiError (counted)."""
    t0, started = time.perf_counter(), now_utc()
    state = proxy_state(request)
    try:
        key_id = key(state, request) if key is not None else state.auth.client(request)
        body = await read_body(request, state.settings.server)
        # An Azure-style path names the deployment (the route) instead of the body's model.
        payload = parse(body, request.scope["state"].get("deployment"))
        route = state.route_for(payload["model"])
    except ApiError as exc:
        state.metrics.client_errors.labels(exc.code or "invalid_request").inc()
        raise
    chat = to_chat(payload) if to_chat is not None else payload
    headers = request.headers
    session = headers.get("x-apprentice-session") or payload.get("user")
    capture = route.capture and headers.get("x-apprentice-capture", "").lower() != "off"
    exchange = Exchange(
        request_id=request.scope["state"]["request_id"], route=route, started_at=started,
        payload=payload, request_body=body, stream=payload.get("stream") is True,
        endpoint=endpoint, chat=chat, capture=capture, task=headers.get("x-apprentice-task"),
        session_hash=session_hash(session if isinstance(session, str) else None), key_id=key_id,
    )  # fmt: skip
    return Begun(state, exchange, t0)


async def guarded(begun: Begun, answer: Callable[[], Awaitable[Response]]) -> Response:
    """`answer()`, with a bug answered 500, counted and logged like any other answer."""
    state, exchange = begun.state, begun.exchange
    try:
        return await answer()
    except ClientGone:
        exchange.status, exchange.outcome = 499, "client_disconnected"
        finish(state, exchange, begun.t0)
        return Response(status_code=499)  # nobody is listening; uvicorn drops it
    except ApiError:
        raise
    except Exception:
        log.exception("%s %s failed", exchange.endpoint, exchange.request_id)
        exchange.status, exchange.outcome = 500, "error"
        exchange.error = "apprentice failed on this request; see its log."
        finish(state, exchange, begun.t0)
        raise ApiError(500, exchange.error, "server_error", code="internal_error") from None


async def until_answered(
    request: Request, work: Awaitable[T], body_read: asyncio.Event | None = None
) -> T:
    """`work`'s result, or ClientGone (with `work` cancelled) when the client leaves first.

    `work` runs in the caller's task. Under the proxy's own protocol the connection's
    disconnect future cancels it through a callback; under any other server a watcher task
    waits for the disconnect (a task per side and `asyncio.wait` cost three times as much). A
    body that `work` itself streams on sets `body_read` at its end: the watcher must not take
    its chunks (the callback reads no message, so it needs no such wait)."""
    current = asyncio.current_task()
    assert current is not None
    disconnected = request.scope.get("extensions", {}).get(DISCONNECTED)
    if disconnected is not None:
        return await _until_answered_or(disconnected, current, work)
    left: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def watch() -> None:
        if body_read is not None:
            await body_read.wait()
        # The body has been read: the only message left to receive is the disconnect.
        while (await request.receive())["type"] != "http.disconnect":
            pass
        left.set_result(None)

    watcher = asyncio.get_running_loop().create_task(watch())
    try:  # the watcher only resolves a future: the callback path decides and cancels
        return await _until_answered_or(left, current, work)
    finally:
        watcher.cancel()


async def _until_answered_or(
    disconnected: asyncio.Future[None], current: asyncio.Task[Any], work: Awaitable[T]
) -> T:
    waiting, gone = True, False

    def cancel(_: asyncio.Future[None]) -> None:
        nonlocal gone
        if waiting:  # (a callback already scheduled may run after the answer came)
            gone = True
            current.cancel()

    disconnected.add_done_callback(cancel)
    try:
        return await work
    except asyncio.CancelledError:
        if gone:
            current.uncancel()
            raise ClientGone from None
        raise
    finally:
        waiting = False
        disconnected.remove_done_callback(cancel)


def finished(begun: Begun, body: bytes, status: int, headers: dict[str, str]) -> Response:
    """A whole answer's response, its row journaled first: once the client has it, so has
    the log."""
    if begun.exchange.ttft_s is None:  # a whole answer's first byte is its last
        begun.exchange.ttft_s = time.perf_counter() - begun.t0
    finish(begun.state, begun.exchange, begun.t0)
    return Response(body, status_code=status, headers=headers)


def relayed(begun: Begun, upstream: Upstream, done: tuple[bytes, ...]) -> Response:
    """The teacher's answer as it came: a stream relayed as it arrives (its row journaled before
    the event that ends it), a whole body finished first."""
    state, exchange = begun.state, begun.exchange
    headers = upstream.headers | {REQUEST_ID: exchange.request_id, SERVED_BY: "teacher"}
    if upstream.chunks is not None:
        t0 = begun.t0
        return RelayResponse(upstream, headers, exchange, lambda: finish(state, exchange, t0), t0,
                             done=done)  # fmt: skip
    exchange.status, exchange.response_body = upstream.status, upstream.body
    exchange.error = upstream.error
    exchange.outcome = "ok" if upstream.status < 400 else "upstream_error"
    return finished(begun, upstream.body or b"", upstream.status, headers)


def finish(state: ProxyState, exchange: Exchange, t0: float) -> None:
    """Build the row, count the request, queue the row; never raises, never waits."""
    try:
        _finish(state, exchange, t0)
    except Exception:  # capture must never fail a request that has been answered
        log.exception("capture of %s failed", exchange.request_id)
        state.metrics.capture_failures.inc()


def _finish(state: ProxyState, exchange: Exchange, t0: float) -> None:
    exchange.latency_s = time.perf_counter() - t0
    row = build_row(exchange, state.pricer, state.redactor)
    bind_created(state, exchange, row)
    route = exchange.route.name
    try:
        if (state.router is not None and exchange.shadow_version and exchange.outcome == "ok"
                and exchange.status == 200):  # fmt: skip
            row.shadow_pair_id = schedule_shadow(state, exchange, exchange.shadow_version)
    finally:  # the row first: counting below must never cost an answered request its row
        if exchange.capture:
            state.logbook.submit(row)
        else:
            reason = "header" if exchange.route.capture else "route_config"
            state.metrics.capture_skipped.labels(reason).inc()
    served = "student" if exchange.by_student else "teacher"
    metrics = state.metrics
    metrics.requests.labels(route, served, exchange.outcome).inc()
    metrics.request_duration.labels(route, served).observe(exchange.latency_s)
    if exchange.ttft_s is not None:
        metrics.time_to_first_token.labels(route, served).observe(exchange.ttft_s)
    state.accounting.count(row)
    if state.drift is not None and exchange.chat is not None:
        state.drift.observe_prompt(route, exchange.chat.get("messages"))
    if state.router is not None:
        ok = exchange.outcome in ("ok", "client_disconnected")
        traffic = state.router.traffic[route]
        if exchange.fallback is not None:
            traffic.fell_back(exchange.fallback)
        else:
            traffic.served(exchange.by_student, ok, exchange.latency_s)


def choose_student(begun: Begun, request: Request) -> str | None:
    """The student version the weights give this request (None: the teacher), and whether the
    teacher's answer is also to be compared with a student (set on the exchange)."""
    state, exchange = begun.state, begun.exchange
    if state.router is None:
        return None
    route = exchange.route.name
    payload = exchange.payload
    sticky = request.headers.get("x-apprentice-session") or payload.get("user")
    version = state.router.choose(route, str(sticky or exchange.request_id))
    if version is not None and state.router.holdout(route):
        exchange.shadow_version, version = version, None  # measured against the teacher
    elif version is None:
        exchange.shadow_version = state.router.shadow_for(route)
    return version


async def read_body(request: Request, server: ServerSettings) -> bytes:
    """The request body: a 413 over `max_body_bytes`, a 408 slower than `body_timeout_s`."""
    limit = server.max_body_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    if request.scope.get("extensions", {}).get(BODY_RECEIVED):
        message = await request.receive()  # the whole body, already here: no timer to arm
        body: bytes = message.get("body", b"")
        if len(body) > limit:
            raise _too_large(limit)
        if not message.get("more_body", False):
            return body
        return body + await _rest_of_body(request, server, limit - len(body))
    return await _rest_of_body(request, server, limit)


async def _rest_of_body(request: Request, server: ServerSettings, limit: int) -> bytes:
    chunks, size = [], 0
    try:
        async with asyncio.timeout(server.body_timeout_s):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise _too_large(server.max_body_bytes)
                chunks.append(chunk)
    except TimeoutError:
        raise ApiError(
            408,
            f"The request body took longer than {server.body_timeout_s:g} s to arrive "
            "(server.body_timeout_s).",
            code="request_timeout",
            headers={"connection": "close"},
        ) from None
    return b"".join(chunks)


def _too_large(limit: int) -> ApiError:
    return ApiError(
        413,
        f"The request body is larger than this proxy accepts ({limit} bytes, "
        "server.max_body_bytes).",
        code="request_too_large",
    )


def json_object(body: bytes, model: str | None = None) -> dict[str, Any]:
    """A request body as a JSON object no deeper than MAX_DEPTH, naming its model, or a 400
    saying what is wrong."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise ApiError(400, "The request body is not valid JSON.", code="invalid_json") from None
    if not isinstance(payload, dict):
        raise ApiError(400, "The request body must be a JSON object.", code="invalid_json")
    if too_deep(body, payload):
        raise ApiError(
            400,
            f"The request nests JSON deeper than {MAX_DEPTH} levels; flatten it.",
            code="invalid_json",
        )
    if model is not None:
        payload["model"] = model
    model = payload.get("model")
    if not isinstance(model, str) or not model:
        raise invalid("model", "'model' is required and must be a string naming a route.")
    if payload.get("stream") is not None and not isinstance(payload["stream"], bool):
        raise invalid("stream", "'stream' must be a boolean.")
    return payload


def too_deep(body: bytes, value: Any) -> bool:
    """Whether `value` (parsed from `body`) nests deeper than MAX_DEPTH.

    Deeper JSON would fail later, when it is serialised again (orjson stops at 254 levels).
    A body with fewer brackets than the limit cannot be that deep: most requests are answered
    by two byte counts, without walking the structure."""
    if body.count(b"[") + body.count(b"{") <= MAX_DEPTH:
        return False
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            return True
        children = item.values() if isinstance(item, dict) else item
        stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))
    return False


def invalid(param: str, message: str) -> ApiError:
    return ApiError(400, message, code="invalid_value", param=param)
