"""POST /v1/chat/completions: the route's teacher (or a student) answers, the pair is logged.

This is the hot path. It does the least it can: parse the body once, forward, relay. The
steps every surface shares (auth, body, route, finishing the row before the last byte) are in
`proxy.surface`.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from logbook.surfaces import CHAT
from proxy.relay import RelayResponse, strip_logprobs
from proxy.serving import answer_with_student
from proxy.surface import (
    REQUEST_ID,
    SERVED_BY,
    Begun,
    begin,
    choose_student,
    finish,
    finished,
    guarded,
    invalid,
    json_object,
    until_answered,
)


async def chat_completions(request: Request) -> Response:
    """Proxy one chat completion to the route's teacher (or a student) and log it."""
    begun = await begin(request, CHAT, parse_chat_request)
    return await guarded(begun, lambda: _answer(begun, request))


async def _answer(begun: Begun, request: Request) -> Response:
    state, exchange = begun.state, begun.exchange
    route, payload, request_id = exchange.route, exchange.payload, exchange.request_id
    version = choose_student(begun, request)
    if version is not None:
        answered = await until_answered(
            request, answer_with_student(state, route, exchange, version)
        )
        if answered is not None:
            exchange.status = 200
            body_out, out_headers = answered
            out_headers |= {REQUEST_ID: request_id, SERVED_BY: exchange.served_by}
            return finished(begun, body_out, 200, out_headers)
    upstream_payload = payload
    if route.capture_top_logprobs and not payload.get("logprobs"):
        upstream_payload = payload | {"logprobs": True, "top_logprobs": route.capture_top_logprobs}
        exchange.proxy_added_logprobs = True
    upstream = await until_answered(
        request, state.teacher.call(route, upstream_payload, exchange.stream)
    )
    headers = upstream.headers | {REQUEST_ID: request_id, SERVED_BY: "teacher"}
    if upstream.chunks is not None:
        t0 = begun.t0
        return RelayResponse(upstream, headers, exchange, lambda: finish(state, exchange, t0), t0)
    exchange.status = upstream.status
    exchange.response_body = upstream.body
    exchange.error = upstream.error
    exchange.outcome = "ok" if upstream.status < 400 else "upstream_error"
    body_out = upstream.body or b""
    if exchange.proxy_added_logprobs and upstream.status == 200:
        body_out = strip_logprobs(body_out)
    return finished(begun, body_out, upstream.status, headers)


def parse_chat_request(body: bytes, model: str | None = None) -> dict[str, Any]:
    """The request as a dict, or a 400 that says what is wrong with it."""
    payload = json_object(body, model)
    messages = payload.get("messages")
    if not isinstance(messages, list) or not messages:
        raise invalid("messages", "'messages' is required and must be a non-empty array.")
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise invalid(f"messages[{i}]", f"messages[{i}] must be an object with a 'role'.")
    n = payload.get("n")
    if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n < 1):
        raise invalid("n", "'n' must be a positive integer.")
    return payload
