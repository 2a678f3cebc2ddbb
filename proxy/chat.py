"""POST /v1/chat/completions: check the request, pick the route, answer, hand off the capture.

This is the hot path. It does the least it can: parse the body once, forward, relay, and queue
the raw exchange for the logbook; parsing the answer and counting tokens happen later.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from apprentice.config import RouteConfig
from proxy.errors import ApiError
from proxy.exchange import Exchange, now_utc, session_hash
from proxy.relay import RelayResponse, strip_logprobs
from proxy.serving import answer_with_student
from proxy.shadow import schedule_shadow
from proxy.state import ProxyState, proxy_state

SERVED_BY = "x-apprentice-served-by"
REQUEST_ID = "x-apprentice-request-id"


async def chat_completions(request: Request) -> Response:
    """Proxy one chat completion to the route's teacher and log it."""
    t0 = time.perf_counter()
    started = now_utc()
    state = proxy_state(request)
    request_id: str = request.scope["state"]["request_id"]
    try:
        key = state.auth.client(request)
        body = await read_body(request, state.config.server.max_body_bytes)
        payload = parse_chat_request(body)
        route = state.route_for(payload["model"])
    except ApiError as exc:
        state.metrics.client_errors.labels(exc.code or "invalid_request").inc()
        raise
    exchange = _exchange(state, request, route, payload, body, started, request_id, key)
    if exchange.capture:
        state.logbook.expect(request_id, route.name)
    if state.rollout is not None:
        sticky = request.headers.get("x-apprentice-session") or payload.get("user") or request_id
        version = state.rollout.choose(route.name, str(sticky))
        if version is not None and state.rollout.holdout(route.name):
            exchange.shadow_version, version = version, None  # measured against the teacher
        elif version is None:
            exchange.shadow_version = state.rollout.shadow_for(route.name, None)
        if version is not None:
            answered = await answer_with_student(state, route, exchange, version)
            if answered is not None:
                exchange.status, exchange.ttft_s = 200, time.perf_counter() - t0
                finish(state, exchange, t0)
                body_out, out_headers = answered
                out_headers |= {REQUEST_ID: request_id, SERVED_BY: exchange.served_by}
                return Response(body_out, status_code=200, headers=out_headers)
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
    finish(state, exchange, t0)
    return Response(body_out, status_code=upstream.status, headers=headers)


def finish(state: ProxyState, exchange: Exchange, t0: float) -> None:
    """Record metrics and queue the exchange for the logbook; never raises, never waits."""
    exchange.latency_s = time.perf_counter() - t0
    served = "teacher" if exchange.served_by == "teacher" else "student"
    metrics = state.metrics
    metrics.requests.labels(exchange.route, served, exchange.outcome).inc()
    metrics.request_duration.labels(exchange.route, served).observe(exchange.latency_s)
    if exchange.ttft_s is not None:
        metrics.time_to_first_token.labels(exchange.route, served).observe(exchange.ttft_s)
    if not exchange.capture:
        metrics.capture_skipped.labels(
            "header" if exchange.route_config.capture else "route_config"
        ).inc()
    if state.rollout is not None:
        ok = exchange.outcome in ("ok", "client_disconnected")
        traffic = state.rollout.traffic[exchange.route]
        if exchange.fallback is not None:
            traffic.fell_back(exchange.fallback)
        else:
            traffic.served(served == "student", ok, exchange.latency_s)
        if exchange.shadow_version and exchange.outcome == "ok" and exchange.status == 200:
            schedule_shadow(state, exchange, exchange.shadow_version)
    state.logbook.submit(exchange)


def _exchange(
    state: ProxyState,
    request: Request,
    route: RouteConfig,
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
        route=route.name,
        route_config=route,
        accounting=state.accounting,
        started_at=started,
        payload=payload,
        request_body=body,
        stream=payload.get("stream") is True,
        capture=capture,
        task=headers.get("x-apprentice-task"),
        session_hash=session_hash(session if isinstance(session, str) else None),
        key_id=key,
    )


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing more than `limit` bytes with a 413."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
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


def _invalid(param: str, message: str) -> ApiError:
    return ApiError(400, message, code="invalid_value", param=param)
