"""The checks a student's answer must pass before a client sees it, and its SSE form."""

from __future__ import annotations

import math
from typing import Any

import pytest

from proxy.serving import completion_sse, fallback_reason
from proxy.sse import reassemble
from proxy.student_protocol import StudentResult

JSON_REQUEST = {"model": "triage", "messages": [], "response_format": {"type": "json_object"}}
SCHEMA_REQUEST = {"model": "triage", "messages": [], "response_format": {"type": "json_schema"}}
TEXT_REQUEST = {"model": "triage", "messages": [{"role": "user", "content": "hi"}]}


def result(content: str | None, mean_logprob: float = -0.1) -> StudentResult:
    message = {"role": "assistant", "content": content}
    choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": "stop"}
    return StudentResult(
        {"id": "chatcmpl-1", "object": "chat.completion", "choices": [choice]}, mean_logprob, 0.01
    )


@pytest.mark.parametrize(
    ("answer", "payload", "floor", "reason"),
    [
        (result('{"intent": "refund"}'), JSON_REQUEST, -1.0, None),
        (result("plain words"), TEXT_REQUEST, -1.0, None),
        (result("plain words", -5.0), TEXT_REQUEST, None, None),  # no floor: never too unsure
        (result(""), TEXT_REQUEST, -1.0, "empty"),
        (result(None), TEXT_REQUEST, None, "empty"),
        (StudentResult({"choices": []}, -0.1, 0.01), TEXT_REQUEST, -1.0, "empty"),
        (result("", -math.inf), TEXT_REQUEST, -1.0, "empty"),  # empty comes before confidence
        (result("plain words", -1.5), TEXT_REQUEST, -1.0, "low_confidence"),
        (result("plain words", -0.001), TEXT_REQUEST, 0.0, "low_confidence"),
        (result("not json"), JSON_REQUEST, -1.0, "invalid_json"),
        (result('{"intent": '), SCHEMA_REQUEST, None, "invalid_json"),
        (result("not json"), TEXT_REQUEST, -1.0, None),  # JSON only matters when asked for
        (result("not json", -2.0), JSON_REQUEST, -1.0, "low_confidence"),
    ],
)
def test_fallback_reason(
    answer: StudentResult, payload: dict[str, Any], floor: float | None, reason: str | None
) -> None:
    assert fallback_reason(answer, payload, floor) == reason


def _completion(logprobs: dict[str, Any] | None) -> dict[str, Any]:
    message = {"role": "assistant", "content": '{"intent": "refund", "priority": "high"}'}
    choice = {"index": 0, "message": message, "finish_reason": "stop"}
    if logprobs is not None:
        choice["logprobs"] = logprobs
    return {
        "id": "chatcmpl-abc",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "triage",
        "choices": [choice],
        "usage": {"prompt_tokens": 30, "completion_tokens": 12, "total_tokens": 42},
    }


def test_completion_sse_reassembles_to_the_same_completion() -> None:
    entry = {"token": "{", "logprob": -0.01, "bytes": [123], "top_logprobs": []}
    response = _completion({"content": [entry]})
    payload = TEXT_REQUEST | {"stream": True, "stream_options": {"include_usage": True}}
    body = completion_sse(response, payload)
    assert body.startswith(b"data: ") and body.endswith(b"data: [DONE]\n\n")
    back = reassemble([body])
    assert back.done and back.error is None
    assert back.response == response


def test_completion_sse_without_usage_or_logprobs() -> None:
    response = _completion(None)
    back = reassemble([completion_sse(response, TEXT_REQUEST | {"stream": True})])
    assert back.done and back.response is not None
    assert back.response["usage"] is None  # the client did not ask for a usage chunk
    assert back.response["choices"] == response["choices"]
    assert {k: back.response[k] for k in ("id", "created", "model", "object")} == {
        k: response[k] for k in ("id", "created", "model", "object")
    }
