"""POST /v1/messages, Anthropic's Messages API, as anthropic-python calls it with `base_url` set
to the proxy's root (the key as `x-api-key`, or as a Bearer token).

- A route whose teacher is `anthropic/...` gets the request as it came (the route's model name
  put in) at `{teacher_api_base}/v1/messages`, and its answer, streamed events included, goes
  back byte for byte.
- Any other teacher, and every student, answers in chat form (`logbook.surfaces`); the answer
  comes back as an Anthropic Message or its event stream, built as the chat answer arrives.
Errors are in Anthropic's shape, as its SDK expects.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from logbook.surfaces import MESSAGES, messages_request_to_chat
from proxy.errors import ApiError, anthropic_error_body
from proxy.serving import SSE_HEADERS, student_answer
from proxy.state import ProxyState
from proxy.streams import MESSAGES_DONE
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
from proxy.teacher import Upstream
from proxy.translation import AnthropicWriter, sse, translated, whole


async def messages(request: Request) -> Response:
    """Answer one Anthropic Messages call and log it as a pair; errors in Anthropic's shape."""
    try:
        begun = await begin(request, MESSAGES, parse_messages_request, messages_request_to_chat,
                            key=anthropic_key)  # fmt: skip
        return await guarded(begun, lambda: _answer(begun, request))
    except ApiError as exc:
        exc.anthropic = True
        raise


def anthropic_key(state: ProxyState, request: Request) -> str | None:
    """anthropic-python sends its key as `x-api-key`; other clients send a Bearer token."""
    api_key = request.headers.get("x-api-key")
    return state.auth.key(api_key) if api_key is not None else state.auth.client(request)


def parse_messages_request(body: bytes, model: str | None = None) -> dict[str, Any]:
    payload = json_object(body, model)
    messages = payload.get("messages")
    if not isinstance(messages, list) or not messages:
        raise invalid("messages", "messages: field required (a non-empty list).")
    max_tokens = payload.get("max_tokens")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise invalid("max_tokens", "max_tokens: field required (a positive integer).")
    return payload


async def _answer(begun: Begun, request: Request) -> Response:
    state, exchange = begun.state, begun.exchange
    route, payload = exchange.route, exchange.payload
    assert exchange.chat is not None
    version = choose_student(begun, request)
    if version is not None:
        result = await until_answered(
            request, student_answer(state, route, exchange, version, exchange.chat)
        )
        if result is not None:
            return _from_student(begun, result.response)
    if route.teacher.startswith("anthropic/"):
        version_header = request.headers.get("anthropic-version")
        upstream = await until_answered(
            request, state.teacher.anthropic(route, payload, exchange.stream, version_header)
        )
        return relayed(begun, upstream, MESSAGES_DONE)
    upstream = await until_answered(
        request, state.teacher.call(route, exchange.chat, exchange.stream)
    )
    writer = AnthropicWriter(route.name)
    if upstream.chunks is not None:
        upstream.chunks = translated(upstream.chunks, writer)
    elif upstream.status == 200 and upstream.body is not None:
        whole(writer, orjson.loads(upstream.body), exchange.chat)
        upstream.body = orjson.dumps(writer.message())
    else:
        upstream.body = anthropic_error(upstream)
    return relayed(begun, upstream, MESSAGES_DONE)


def anthropic_error(upstream: Upstream) -> bytes:
    """A chat teacher's error in Anthropic's shape (its message kept)."""
    try:
        message = str(orjson.loads(upstream.body or b"{}")["error"]["message"])
    except (orjson.JSONDecodeError, KeyError, TypeError):
        message = upstream.error or f"The teacher answered HTTP {upstream.status}."
    return anthropic_error_body(upstream.status, message)


def _from_student(begun: Begun, completion: dict[str, Any]) -> Response:
    exchange = begun.exchange
    assert exchange.chat is not None
    writer = AnthropicWriter(exchange.route.name)
    events = whole(writer, completion, exchange.chat)
    headers = {REQUEST_ID: exchange.request_id, SERVED_BY: exchange.served_by}
    redact = begun.state.redactor.bytes
    exchange.status = 200
    if exchange.stream:
        body = redact(sse(events, named=True))
        exchange.chunks = [body]
        return finished(begun, body, 200, headers | SSE_HEADERS)
    body = redact(orjson.dumps(writer.message()))
    exchange.response_body = body
    return finished(begun, body, 200, headers | {"content-type": "application/json"})
