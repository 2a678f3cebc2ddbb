"""POST /v1/messages/count_tokens: Anthropic's token count, as anthropic-python's
`messages.count_tokens` calls it.

A route whose teacher is `anthropic/...` passes the request to its teacher (the route's model
name put in), which counts with its own tokenizer. Any other route is answered here: the
request in chat form, counted with litellm's `token_counter` for the route's teacher model
(its tokenizer when litellm knows it, an OpenAI one otherwise), in Anthropic's shape
`{"input_tokens": N}`. Errors are in Anthropic's shape.

Every call is a row (endpoint `messages/count_tokens`, never a training pair): its status,
latency, key id and the tokens counted; no cost, since counting produces nothing.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from logbook.surfaces import messages_request_to_chat
from proxy.errors import ApiError
from proxy.exchange import build_row
from proxy.messages import anthropic_error, anthropic_key
from proxy.surface import REQUEST_ID, SERVED_BY, Begun, begin, invalid, json_object, until_answered
from proxy.teacher import Upstream

COUNT_TOKENS = "messages/count_tokens"


async def count_tokens(request: Request) -> Response:
    """Count a Messages request's input tokens: the Anthropic teacher's count, or litellm's."""
    try:
        begun = await begin(request, COUNT_TOKENS, parse_count_request, messages_request_to_chat,
                            key=anthropic_key)  # fmt: skip
        return await _answer(begun, request)
    except ApiError as exc:
        exc.anthropic = True
        raise


def parse_count_request(body: bytes, model: str | None = None) -> dict[str, Any]:
    payload = json_object(body, model)
    messages = payload.get("messages")
    if not isinstance(messages, list) or not messages:
        raise invalid("messages", "messages: field required (a non-empty list).")
    return payload


async def _answer(begun: Begun, request: Request) -> Response:
    state, exchange = begun.state, begun.exchange
    route, payload = exchange.route, exchange.payload
    if route.teacher.startswith("anthropic/"):
        version = request.headers.get("anthropic-version")
        upstream = await until_answered(
            request, state.teacher.anthropic(route, payload, False, version, path=COUNT_TOKENS)
        )
        if upstream.status >= 400:
            upstream.body = anthropic_error(upstream)
    else:
        assert exchange.chat is not None
        counted = await asyncio.to_thread(_count, route.teacher, exchange.chat)
        body = orjson.dumps({"input_tokens": counted})
        upstream = Upstream(200, {"content-type": "application/json"}, body=body)
        exchange.served_by = "proxy"
    exchange.status, exchange.response_body = upstream.status, upstream.body
    exchange.error = upstream.error
    exchange.outcome = "ok" if upstream.status < 400 else "upstream_error"
    _log(begun, upstream)
    headers = upstream.headers | {REQUEST_ID: exchange.request_id, SERVED_BY: exchange.served_by}
    return Response(upstream.body, status_code=upstream.status, headers=headers)


def _count(model: str, chat: dict[str, Any]) -> int:
    import litellm

    return int(litellm.token_counter(model=model, messages=chat["messages"],
                                     tools=chat.get("tools")))  # fmt: skip


def _log(begun: Begun, upstream: Upstream) -> None:
    """The call's row: the tokens counted, no answer tokens and no cost."""
    state, x = begun.state, begun.exchange
    x.latency_s = x.ttft_s = time.perf_counter() - begun.t0
    try:
        row = build_row(x, state.pricer, state.redactor)
        answer = orjson.loads(upstream.body or b"{}") if upstream.status == 200 else {}
        counted = answer.get("input_tokens") if isinstance(answer, dict) else None
        row.prompt_tokens = counted if isinstance(counted, int) else None
        row.completion_tokens, row.total_tokens = 0, row.prompt_tokens
        row.cost_usd, row.usage_estimated = None, False
        state.metrics.passthrough.labels(x.route.name, "other", x.outcome).inc()
        if x.capture:
            state.logbook.submit(row)
    except Exception:  # capture must never fail an answered request
        state.metrics.capture_failures.inc()
