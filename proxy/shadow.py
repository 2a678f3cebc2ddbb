"""Shadow comparisons: a teacher-served request also sent to a student, off the response path.

The client has its answer before the student is asked. The pair (teacher answer, student
answer, both latencies, exact match and token F1 as in the retrain evaluation) is logged as a
student row carrying the teacher row's `shadow_pair_id`, and counted by verdict. Whether the
student's cascade rule would have served its answer is recorded too (`proxy.cascade`): the
live coverage and agreement that eval predicted.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any

import orjson

from logbook.surfaces import CHAT, as_chat
from proxy.exchange import Exchange, build_row, parsed_answer
from proxy.serving import fallback_reason
from proxy.state import ProxyState, new_request_id
from proxy.student_protocol import StudentError, StudentResult
from retrain.students import exact_match, token_f1

log = logging.getLogger("apprentice.shadow")


MAX_IN_FLIGHT = 64  # beyond this a busy student would only queue comparisons for seconds


def schedule_shadow(state: ProxyState, exchange: Exchange, version: str) -> str | None:
    """Start the comparison in the background and return its pair id (None when skipped);
    the caller never waits for it."""
    if len(state.background) >= MAX_IN_FLIGHT:
        state.metrics.shadow_skipped.labels(exchange.route.name).inc()
        return None
    exchange.shadow_pair_id = f"pair_{uuid.uuid4().hex[:16]}"
    task = asyncio.get_running_loop().create_task(compare(state, exchange, version))
    state.background.add(task)
    task.add_done_callback(state.background.discard)
    return exchange.shadow_pair_id


async def compare(state: ProxyState, teacher: Exchange, version: str) -> None:
    """Ask the student, compare with the teacher's answer, record the pair."""
    assert state.router is not None
    route = teacher.route
    teacher_text = teacher_answer(teacher)
    if teacher_text is None:
        return
    payload = (teacher.chat or teacher.payload) | {"stream": False}
    started, result, error = time.perf_counter(), None, None
    try:
        student = await state.students.get(route.name, int(version.removeprefix("v")))
        if student.supports(payload) is not None:
            return
        result = await asyncio.wait_for(student.complete(payload), route.student_timeout_s)
    except (StudentError, TimeoutError, OSError, ValueError) as exc:
        error = f"{type(exc).__name__}: {exc}"
    latency = time.perf_counter() - started
    student_text = None
    if result is not None:
        choices = result.response.get("choices") or [{}]
        student_text = (choices[0].get("message") or {}).get("content") or ""
    tags: dict[str, Any] = {"shadow": True, "teacher_request_id": teacher.request_id,
                            "teacher_latency_ms": (teacher.latency_s or 0) * 1000,
                            "student_latency_ms": latency * 1000}  # fmt: skip
    if student_text is None:
        verdict = "error"
    else:
        agree = exact_match(student_text, teacher_text)
        tags |= {"exact_match": agree, "token_f1": token_f1(student_text, teacher_text)}
        verdict = "agree" if agree else "disagree"
        assert result is not None
        tags["cascade_served"] = _cascade_record(state, teacher, version, result, agree)
    tags["verdict"] = verdict
    state.metrics.shadow_comparisons.labels(route.name, verdict).inc()
    # The canary judges what a client would get: an answer the cascade defers is the
    # teacher's own, so it agrees.
    client_gets = "agree" if tags.get("cascade_served") is False else verdict
    state.router.traffic[route.name].compared(client_gets)
    if state.drift is not None:
        state.drift.observe_shadow(route.name, verdict)
        if student_text is not None:
            state.drift.observe_output(route.name, student_text)
    if not teacher.capture:  # the client asked for no log: its shadow pair is not kept either
        return
    shadow = Exchange(
        request_id=new_request_id(), route=route, started_at=teacher.started_at,
        payload=payload, request_body=_chat_body(teacher, payload), stream=False,
        served_by=f"student:{version}", task=teacher.task, session_hash=teacher.session_hash,
        key_id=teacher.key_id, status=200 if result else 500,
        outcome="ok" if result else "error", error=error,
        response_body=state.redactor.bytes(orjson.dumps(result.response)) if result else None,
        latency_s=latency, ttft_s=latency, shadow_pair_id=teacher.shadow_pair_id,
        tags=tags, shadow=True,
    )  # fmt: skip
    state.logbook.submit(build_row(shadow, state.pricer, state.redactor))


def _chat_body(teacher: Exchange, payload: dict[str, Any]) -> bytes:
    # A shadow pair is a chat pair: a Responses or Messages request is kept in its chat form.
    return teacher.request_body if teacher.endpoint == CHAT else orjson.dumps(payload)


def _cascade_record(
    state: ProxyState, teacher: Exchange, version: str, result: StudentResult, agree: bool
) -> bool:
    """Whether the student's answer would have been served (its cascade rule, the floor, the
    JSON check), recorded for the live coverage and agreement."""
    route = teacher.route
    rule = state.cascade.rule(route, version)
    payload = teacher.payload | {"stream": False}
    served = fallback_reason(result, payload, route.confidence_floor, rule) is None
    state.cascade.record(route.name, version, served, agree)
    return served


def teacher_answer(exchange: Exchange) -> str | None:
    """The text of the teacher's first choice, or None when there is none to compare."""
    if exchange.status != 200 or exchange.outcome != "ok":
        return None
    answer = parsed_answer(exchange)
    try:
        response = as_chat(exchange.endpoint, {}, answer)[1] if answer is not None else None
    except ValueError:  # not a pair surface
        return None
    if not isinstance(response, dict) or not response.get("choices"):
        return None
    message = response["choices"][0].get("message") or {}
    if message.get("tool_calls"):
        return None  # students do not make tool calls; nothing fair to compare
    content = message.get("content")
    return content if isinstance(content, str) else None
