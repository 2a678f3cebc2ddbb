"""POST /v1/responses, OpenAI's Responses API: passed through, translated, or a student's.

- An OpenAI-compatible teacher gets the request as it came (the route's model name put in),
  and its answer, streamed typed events included, goes back byte for byte.
- Any other teacher (litellm) and every student answer the request in its chat form
  (`logbook.surfaces`); the answer comes back as a Response, or as its event stream, built as
  the chat answer arrives (`proxy.translation`).
- Server-side state and built-in tools (`previous_response_id`, a `conversation`, background
  runs, web search and the other hosted tools) exist only at OpenAI: such a request always goes
  to the teacher, counted as bypassed by the student, and is refused with a sentence naming the
  provider when the teacher is not OpenAI-compatible.

`GET` and `DELETE /v1/responses/{id}` are plain pass-through (`proxy.passthrough`).
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from logbook.surfaces import RESPONSES, responses_request_to_chat
from proxy.errors import ApiError
from proxy.serving import SSE_HEADERS, student_answer
from proxy.streams import RESPONSES_DONE
from proxy.surface import (
    REQUEST_ID,
    SERVED_BY,
    Begun,
    begin,
    choose_student,
    finished,
    guarded,
    invalid,
    json_object,
    relayed,
    until_answered,
)
from proxy.translation import ResponsesWriter, sse, translated, whole

STATEFUL = ("previous_response_id", "conversation", "background")


async def responses(request: Request) -> Response:
    """Answer one Responses API call and log it as a pair."""
    begun = await begin(request, RESPONSES, parse_responses_request, responses_request_to_chat)
    return await guarded(begun, lambda: _answer(begun, request))


def parse_responses_request(body: bytes, model: str | None = None) -> dict[str, Any]:
    payload = json_object(body, model)
    if not isinstance(payload.get("input"), str | list) and "previous_response_id" not in payload:
        raise invalid("input", "'input' is required: a string or a list of input items.")
    return payload


def server_side(payload: dict[str, Any]) -> str | None:
    """What of the request exists only at OpenAI, or None."""
    for key in STATEFUL:
        if payload.get(key):
            return key
    hosted = [t.get("type") for t in payload.get("tools") or [] if isinstance(t, dict)
              and t.get("type") != "function"]  # fmt: skip
    return f"built-in tool {hosted[0]}" if hosted else None


async def _answer(begun: Begun, request: Request) -> Response:
    state, exchange = begun.state, begun.exchange
    route, payload = exchange.route, exchange.payload
    stateful = server_side(payload)
    version = choose_student(begun, request)
    if version is not None and stateful is not None:
        state.metrics.student_bypassed.labels(route.name, "server_state").inc()
    elif version is not None:
        assert exchange.chat is not None
        result = await until_answered(
            request, student_answer(state, route, exchange, version, exchange.chat)
        )
        if result is not None:
            return _from_student(begun, result.response)
    if route.passthrough:
        upstream = await until_answered(
            request, state.teacher.post(route, RESPONSES, payload, exchange.stream)
        )
        return relayed(begun, upstream, RESPONSES_DONE)
    if stateful is not None:
        raise ApiError(
            400,
            f"Route {route.name!r} reaches its teacher ({route.teacher}) through litellm, which "
            f"keeps no server-side state: {stateful} needs an OpenAI-compatible teacher.",
            param=stateful.split()[-1] if stateful.startswith("built-in") else stateful,
            code="unsupported_parameter",
        )
    assert exchange.chat is not None
    upstream = await until_answered(
        request, state.teacher.call(route, exchange.chat, exchange.stream)
    )
    writer = ResponsesWriter(payload, route.name)
    if upstream.chunks is not None:
        upstream.chunks = translated(upstream.chunks, writer)
        return relayed(begun, upstream, RESPONSES_DONE)
    if upstream.status != 200 or upstream.body is None:
        return relayed(begun, upstream, RESPONSES_DONE)
    whole(writer, orjson.loads(upstream.body), exchange.chat)
    upstream.body = orjson.dumps(writer.response())
    return relayed(begun, upstream, RESPONSES_DONE)


def _from_student(begun: Begun, completion: dict[str, Any]) -> Response:
    exchange = begun.exchange
    assert exchange.chat is not None
    writer = ResponsesWriter(exchange.payload, exchange.route.name)
    events = whole(writer, completion, exchange.chat)
    headers = {REQUEST_ID: exchange.request_id, SERVED_BY: exchange.served_by}
    redact = begun.state.redactor.bytes
    exchange.status = 200
    if exchange.stream:
        body = redact(sse(events, named=True))
        exchange.chunks = [body]
        return finished(begun, body, 200, headers | SSE_HEADERS)
    body = redact(orjson.dumps(writer.response()))
    exchange.response_body = body
    return finished(begun, body, 200, headers | {"content-type": "application/json"})
