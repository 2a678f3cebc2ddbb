"""POST /v1/chat/completions: check the request, pick the route, answer, hand off the row.

This is the hot path. It does the least it can: parse the body once, forward, relay. `finish`
runs once the answer is complete and before its last byte goes out (a whole body before it is
sent; a stream before the chunk that ends it): it builds the row, journals and queues it, and
counts the request, so an answer a client has received is never missing from the log.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from proxy.errors import ApiError
from proxy.exchange import Exchange, build_row, now_utc, session_hash
from proxy.relay import RelayResponse, strip_logprobs
from proxy.serving import answer_with_student
from proxy.settings import RouteSettings, ServerSettings
from proxy.shadow import schedule_shadow
from proxy.state import ProxyState, proxy_state

log = logging.getLogger("apprentice.proxy")
MAX_DEPTH = 64  # nesting levels a request may have (JSON schemas in tools need a few dozen)
SERVED_BY = "x-apprentice-served-by"
REQUEST_ID = "x-apprentice-request-id"


async def chat_completions(request: Request) -> Response:
    """Proxy one chat completion to the route's teacher (or a student) and log it."""
    t0 = time.perf_counter()
    started = now_utc()
    state = proxy_state(request)
    request_id: str = request.scope["state"]["request_id"]
    try:
        key = state.auth.client(request)
        body = await read_body(request, state.settings.server)
        payload = parse_chat_request(body)
        route = state.route_for(payload["model"])
    except ApiError as exc:
        state.metrics.client_errors.labels(exc.code or "invalid_request").inc()
        raise
    exchange = _exchange(request, route, payload, body, started, request_id, key)
    try:
        return await _answer(state, request, exchange, t0)
    except Exception:  # a bug: answered 500 in OpenAI's shape, counted and logged like any answer
        log.exception("chat completion %s failed", request_id)
        exchange.status, exchange.outcome = 500, "error"
        exchange.error = "apprentice failed on this request; see its log."
        finish(state, exchange, t0)
        raise ApiError(500, exchange.error, "server_error", code="internal_error") from None


async def _answer(state: ProxyState, request: Request, exchange: Exchange, t0: float) -> Response:
    route, payload, request_id = exchange.route, exchange.payload, exchange.request_id
    if state.router is not None:
        sticky = request.headers.get("x-apprentice-session") or payload.get("user") or request_id
        version = state.router.choose(route.name, str(sticky))
        if version is not None and state.router.holdout(route.name):
            exchange.shadow_version, version = version, None  # measured against the teacher
        elif version is None:
            exchange.shadow_version = state.router.shadow_for(route.name)
        if version is not None:
            answered = await answer_with_student(state, route, exchange, version)
            if answered is not None:
                exchange.status, exchange.ttft_s = 200, time.perf_counter() - t0
                body_out, out_headers = answered
                out_headers |= {REQUEST_ID: request_id, SERVED_BY: exchange.served_by}
                return _finished(state, exchange, t0, body_out, 200, out_headers)
    upstream_payload = payload
    if route.capture_top_logprobs and not payload.get("logprobs"):
        upstream_payload = payload | {"logprobs": True, "top_logprobs": route.capture_top_logprobs}
        exchange.proxy_added_logprobs = True
    upstream = await state.teacher.call(route, upstream_payload, exchange.stream)
    headers = upstream.headers | {REQUEST_ID: request_id, SERVED_BY: "teacher"}
    if upstream.chunks is not None:
        return RelayResponse(upstream, headers, exchange, lambda: finish(state, exchange, t0), t0)
    exchange.status = upstream.status
    exchange.response_body = upstream.body
    exchange.error = upstream.error
    exchange.outcome = "ok" if upstream.status < 400 else "upstream_error"
    body_out = upstream.body or b""
    if exchange.proxy_added_logprobs and upstream.status == 200:
        body_out = strip_logprobs(body_out)
    exchange.ttft_s = time.perf_counter() - t0
    return _finished(state, exchange, t0, body_out, upstream.status, headers)


def _finished(
    state: ProxyState,
    exchange: Exchange,
    t0: float,
    body: bytes,
    status: int,
    headers: dict[str, str],
) -> Response:
    """The response, its row journaled first: once the client has it, so has the log."""
    finish(state, exchange, t0)
    return Response(body, status_code=status, headers=headers)


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
    route = exchange.route.name
    served = "student" if exchange.by_student else "teacher"
    metrics = state.metrics
    metrics.requests.labels(route, served, exchange.outcome).inc()
    metrics.request_duration.labels(route, served).observe(exchange.latency_s)
    if exchange.ttft_s is not None:
        metrics.time_to_first_token.labels(route, served).observe(exchange.ttft_s)
    state.accounting.count(row)
    if state.drift is not None:
        state.drift.observe_prompt(route, exchange.payload.get("messages"))
    if state.router is not None:
        ok = exchange.outcome in ("ok", "client_disconnected")
        traffic = state.router.traffic[route]
        if exchange.fallback is not None:
            traffic.fell_back(exchange.fallback)
        else:
            traffic.served(exchange.by_student, ok, exchange.latency_s)
        if exchange.shadow_version and exchange.outcome == "ok" and exchange.status == 200:
            row.shadow_pair_id = schedule_shadow(state, exchange, exchange.shadow_version)
    if exchange.capture:
        state.logbook.submit(row)
    else:
        reason = "header" if exchange.route.capture else "route_config"
        metrics.capture_skipped.labels(reason).inc()


def _exchange(
    request: Request,
    route: RouteSettings,
    payload: dict[str, Any],
    body: bytes,
    started: Any,
    request_id: str,
    key: str | None,
) -> Exchange:
    headers = request.headers
    session = headers.get("x-apprentice-session") or payload.get("user")
    capture = route.capture and headers.get("x-apprentice-capture", "").lower() != "off"
    return Exchange(
        request_id=request_id,
        route=route,
        started_at=started,
        payload=payload,
        request_body=body,
        stream=payload.get("stream") is True,
        capture=capture,
        task=headers.get("x-apprentice-task"),
        session_hash=session_hash(session if isinstance(session, str) else None),
        key_id=key,
    )


async def read_body(request: Request, server: ServerSettings) -> bytes:
    """The request body: a 413 over `max_body_bytes`, a 408 slower than `body_timeout_s`."""
    limit = server.max_body_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks, size = [], 0
    try:
        async with asyncio.timeout(server.body_timeout_s):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise _too_large(limit)
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


def parse_chat_request(body: bytes) -> dict[str, Any]:
    """The request as a dict, or a 400 that says what is wrong with it."""
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
    model = payload.get("model")
    if not isinstance(model, str) or not model:
        raise _invalid("model", "'model' is required and must be a string naming a route.")
    messages = payload.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _invalid("messages", "'messages' is required and must be a non-empty array.")
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise _invalid(f"messages[{i}]", f"messages[{i}] must be an object with a 'role'.")
    if payload.get("stream") is not None and not isinstance(payload["stream"], bool):
        raise _invalid("stream", "'stream' must be a boolean.")
    n = payload.get("n")
    if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n < 1):
        raise _invalid("n", "'n' must be a positive integer.")
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


def _invalid(param: str, message: str) -> ApiError:
    return ApiError(400, message, code="invalid_value", param=param)
