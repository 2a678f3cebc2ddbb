"""The unit of curation: one logged request turned into a (prompt, answer) pair.

Every stage takes and returns a list of `Pair`. Parsing happens once, in the select stage;
stages after it work on Python objects and never touch JSON text again until the dataset is
written.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from logbook.surfaces import CHAT, PAIR_ENDPOINTS, as_chat


class MalformedRow(ValueError):
    """A logged row whose request or response cannot be read as chat JSON."""


@dataclass(slots=True)
class Pair:
    request_id: str
    task: str | None
    session_hash: str | None
    teacher: str | None
    prompt_fingerprint: str | None
    started_at: datetime
    messages: list[dict[str, Any]]
    tools: list[Any] | None
    response_format: Any
    answer: dict[str, Any] | None  # the assistant message; None when the call failed
    teacher_logprobs: str | None = None
    outcome: str = "ok"
    status: int = 200
    finish_reason: str | None = None
    truncated: bool = False
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    weight: float = 1.0
    feedback_score: float | None = None
    corrected: bool = False
    group_id: str = ""  # near-duplicate group (dedupe)
    group_members: list[str] = field(default_factory=list)  # request ids folded into this one
    cluster: str = ""  # prompt cluster (balance)


def parse_request(text: str) -> tuple[list[dict[str, Any]], list[Any] | None, Any]:
    """(messages, tools, response_format) of a stored chat request body."""
    return request_parts(_object(text, "request"))


def request_parts(body: dict[str, Any]) -> tuple[list[dict[str, Any]], list[Any] | None, Any]:
    """(messages, tools, response_format) of a chat request."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        raise MalformedRow("request has no list of messages")
    tools = body.get("tools")
    if tools is not None and not isinstance(tools, list):
        raise MalformedRow("request tools is not a list")
    return messages, tools, body.get("response_format")


def parse_answer(text: str | None) -> dict[str, Any] | None:
    """The first choice's assistant message of a stored chat.completion, or None if absent."""
    return None if text is None else answer_of(_object(text, "response"))


def parse_pair(
    endpoint: str | None, request: str, response: str | None
) -> tuple[list[dict[str, Any]], list[Any] | None, Any, dict[str, Any] | None]:
    """(messages, tools, response_format, answer) of a logged pair of any surface (chat,
    the Responses API, Anthropic Messages, legacy completions), read in chat form."""
    if endpoint in (None, CHAT):
        return (*parse_request(request), parse_answer(response))
    if endpoint not in PAIR_ENDPOINTS:
        raise MalformedRow(f"{endpoint} calls are not (prompt, answer) pairs")
    body = _object(request, "request")
    answer = None if response is None else _object(response, "response")
    try:
        chat, completion = as_chat(endpoint, body, answer)
    except (TypeError, AttributeError, ValueError) as exc:
        raise MalformedRow(f"{endpoint} pair cannot be read in chat form: {exc}") from None
    return (*request_parts(chat), None if completion is None else answer_of(completion))


def _object(text: str, what: str) -> dict[str, Any]:
    try:
        body = orjson.loads(text)  # ~3x json's speed: parsing is most of curation's time
    except (TypeError, ValueError):
        try:  # what orjson refuses and json reads (NaN, integers past 64 bits) stays readable
            body = json.loads(text)
        except (TypeError, ValueError) as exc:
            raise MalformedRow(f"{what} is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise MalformedRow(f"{what} is not a JSON object")
    return body


def answer_of(body: dict[str, Any]) -> dict[str, Any] | None:
    """The first choice's assistant message of a chat.completion, or None if absent."""
    choices = body.get("choices")
    if not choices:
        return None
    message = choices[0].get("message") if isinstance(choices[0], dict) else None
    if not isinstance(message, dict):
        raise MalformedRow("response choice has no message")
    answer: dict[str, Any] = {"role": "assistant", "content": message.get("content")}
    if message.get("tool_calls"):
        answer["tool_calls"] = message["tool_calls"]
    if message.get("refusal"):
        answer["refusal"] = message["refusal"]
    return answer


def answer_from_correction(text: str) -> dict[str, Any]:
    """An assistant message from a feedback correction: a message object, a string, or raw text."""
    try:
        value = json.loads(text)
    except ValueError:
        value = text
    if isinstance(value, dict) and ("content" in value or "tool_calls" in value):
        answer: dict[str, Any] = {"role": "assistant", "content": value.get("content")}
        if value.get("tool_calls"):
            answer["tool_calls"] = value["tool_calls"]
        return answer
    content = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return {"role": "assistant", "content": content}


def content_text(content: Any) -> str:
    """Text of a message `content`: a string, or the text parts of a content list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text", "") for p in content if isinstance(p, dict)]
        return "\n".join(p for p in parts if isinstance(p, str))
    return ""


def answer_text(answer: dict[str, Any] | None) -> str:
    """The assistant text, tool calls appended as compact JSON (the dataset's answer_text)."""
    if answer is None:
        return ""
    text = content_text(answer.get("content"))
    calls = answer.get("tool_calls")
    if calls:
        compact = [
            {
                "name": c.get("function", {}).get("name"),
                "arguments": c.get("function", {}).get("arguments"),
            }
            for c in calls
            if isinstance(c, dict)
        ]
        dumped = json.dumps(compact, ensure_ascii=False, separators=(",", ":"))
        text = f"{text}\n{dumped}" if text else dumped
    return text


def prompt_text(messages: list[dict[str, Any]], *, include_system: bool = False) -> str:
    """The prompt as plain text: message texts joined by newlines.

    System messages are left out by default: they are the same for a whole partition, so they
    carry no signal for duplicates or drift, and would dominate lengths and token counts.
    """
    parts = []
    for message in messages:
        if not include_system and message.get("role") in ("system", "developer"):
            continue
        parts.append(content_text(message.get("content")))
        for call in message.get("tool_calls") or ():
            if isinstance(call, dict):
                parts.append(str(call.get("function", {}).get("arguments", "")))
    return "\n".join(parts)
