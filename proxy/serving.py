"""A request the weights gave to a student: its answer, or the teacher's when it falls short.

The student answers in full first, then the answer is checked (the student's calibrated
cascade rule, `proxy.cascade`; the route's confidence floor on the mean token logprob; valid
JSON where the request demanded JSON; no error; within the timeout).
A failed check sends the request on to the teacher, invisibly to the client, and is counted
by reason; the teacher's answer is logged as usual, fresh training data for the next student.
Because of that check a streaming request to a student is answered after generation, as SSE
events built from the checked answer (students answer in tens of milliseconds on this host).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import orjson

from proxy.exchange import Exchange
from proxy.settings import RouteSettings
from proxy.state import ProxyState
from proxy.student_protocol import StudentError, StudentResult
from retrain.students import CascadeRule

SSE_HEADERS = {"content-type": "text/event-stream", "cache-control": "no-cache"}


async def answer_with_student(
    state: ProxyState, route: RouteSettings, exchange: Exchange, version: str
) -> tuple[bytes, dict[str, str]] | None:
    """The student's chat response body and headers, or None to let the teacher answer."""
    result = await student_answer(state, route, exchange, version, exchange.payload)
    if result is None:
        return None
    if exchange.stream:
        body = state.redactor.bytes(completion_sse(result.response, exchange.payload))
        exchange.chunks = [body]
        return body, dict(SSE_HEADERS)
    body = state.redactor.bytes(orjson.dumps(result.response))
    exchange.response_body = body
    return body, {"content-type": "application/json"}


async def student_answer(
    state: ProxyState,
    route: RouteSettings,
    exchange: Exchange,
    version: str,
    payload: dict[str, Any],
) -> StudentResult | None:
    """The student's checked answer to the chat request `payload` (the chat form of any
    surface), or None when the teacher is to answer: why is counted and kept on `exchange`."""
    metrics = state.metrics
    try:
        student = await state.students.get(route.name, int(version.removeprefix("v")))
    except (StudentError, OSError, ValueError):
        reason: str | None = "error"
    else:
        unsupported = student.supports(payload)
        if unsupported is not None:
            metrics.student_bypassed.labels(route.name, unsupported).inc()
            return None
        reason = None
        try:
            result = await asyncio.wait_for(
                student.complete(payload | {"stream": False}), timeout=route.student_timeout_s
            )
            rule = state.cascade.rule(route, version)
            reason = fallback_reason(result, payload, route.confidence_floor, rule)
        except TimeoutError:
            reason = "timeout"
        except StudentError:
            reason = "error"
    if reason is not None:
        metrics.fallbacks.labels(route.name, reason).inc()
        exchange.fallback = reason  # counted against the student when the teacher has answered
        exchange.tags = {"fallback": reason, "student": version}
        return None
    exchange.served_by = f"student:{version}"
    return result


def fallback_reason(
    result: StudentResult,
    payload: dict[str, Any],
    floor: float | None,
    rule: CascadeRule | None = None,
) -> str | None:
    """Why the teacher should answer instead, or None when the student's answer stands."""
    choices = result.response.get("choices") or []
    content = (choices[0].get("message") or {}).get("content") if choices else None
    if not content:
        return "empty"
    if floor is not None and result.mean_logprob < floor:
        return "low_confidence"
    if rule is not None and not rule.serves(result.signals):
        return "low_confidence"
    kind = (payload.get("response_format") or {}).get("type")
    if kind in ("json_object", "json_schema"):
        try:
            json.loads(content)
        except ValueError:
            return "invalid_json"
    return None


def completion_sse(response: dict[str, Any], payload: dict[str, Any]) -> bytes:
    """A checked chat.completion as the SSE stream a client asked for."""
    head = {
        "id": response.get("id"),
        "object": "chat.completion.chunk",
        "created": response.get("created", int(time.time())),
        "model": response.get("model"),
    }
    events: list[dict[str, Any]] = []
    for choice in response.get("choices") or []:
        i, message = choice.get("index", 0), choice.get("message") or {}
        events.append(head | {"choices": [{"index": i, "delta": {"role": "assistant"}}]})
        delta: dict[str, Any] = {"index": i, "delta": {"content": message.get("content") or ""}}
        if choice.get("logprobs"):
            delta["logprobs"] = choice["logprobs"]
        events.append(head | {"choices": [delta]})
        end = {"index": i, "delta": {}, "finish_reason": choice.get("finish_reason")}
        events.append(head | {"choices": [end]})
    if (payload.get("stream_options") or {}).get("include_usage"):
        events.append(head | {"choices": [], "usage": response.get("usage")})
    return b"".join(b"data: " + orjson.dumps(e) + b"\n\n" for e in events) + b"data: [DONE]\n\n"
