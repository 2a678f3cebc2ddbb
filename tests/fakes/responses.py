"""`/v1/responses` of the fake teacher: OpenAI's Responses API, created, streamed and stored.

The shapes are those api.openai.com sends and openai-python's `Response` model validates: a
full Response object (every field the API fills, even when null), output items `message`
(with one `output_text` part) or `function_call`, usage with its token details. A stream is
the typed events with `event:` lines and a `sequence_number` each, no `[DONE]`, ending with
`response.completed` (or `response.incomplete` when `max_output_tokens` cut the text) that
carries the final response. Responses are stored unless `store` is false, for `GET` and
`DELETE /v1/responses/{id}` and for `previous_response_id`.
"""

from __future__ import annotations

import hashlib
import itertools
import time
from collections.abc import Callable, Iterator
from typing import Any

from tests.fakes.answers import (
    Voice,
    asks_for_weather,
    call_id,
    count_tokens,
    finished,
    halves,
    new_id,
    reply_text,
    text_of,
    truncate,
    weather_arguments,
    word_pieces,
)
from tests.fakes.errors import ApiError
from tests.fakes.wire import Reply, typed_sse

JSON_FORMATS = ("json_schema", "json_object")
CLOSING = {"completed": "response.completed", "incomplete": "response.incomplete"}

Event = Callable[..., dict[str, Any]]


class ResponsesApi:
    def __init__(self, voice: Voice) -> None:
        self.voice = voice
        self.stored: dict[str, dict[str, Any]] = {}  # id -> the response as answered

    def create(self, payload: dict[str, Any]) -> Reply:
        previous = self._previous(payload.get("previous_response_id"))
        response = finished(self.voice, self.response(payload, previous))
        if payload.get("store", True):
            self.stored[response["id"]] = response
        if not payload.get("stream"):
            return Reply(body=response)
        obfuscate = (payload.get("stream_options") or {}).get("include_obfuscation", True)
        return Reply(
            stream=typed_sse(
                response_events(response, obfuscate=obfuscate, size=self.voice.delta_chars)
            )
        )

    def retrieve(self, response_id: str) -> Reply:
        return Reply(body=self._stored(response_id))

    def delete(self, response_id: str) -> Reply:
        self._stored(response_id)
        del self.stored[response_id]
        return Reply(body={"id": response_id, "object": "response", "deleted": True})

    def _stored(self, response_id: str) -> dict[str, Any]:
        if response_id not in self.stored:
            raise ApiError(404, f"Response with id '{response_id}' not found.")
        return self.stored[response_id]

    def _previous(self, response_id: str | None) -> dict[str, Any] | None:
        if response_id is None:
            return None
        if response_id not in self.stored:
            raise ApiError(
                400,
                f"Previous response with id '{response_id}' not found.",
                param="previous_response_id",
                code="previous_response_not_found",
            )
        return self.stored[response_id]

    def response(
        self, payload: dict[str, Any], previous: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """The non-streaming answer to one request, before the `mutate` hook."""
        items = input_items(payload)
        said, by_user = last_said(items)
        functions = [t for t in payload.get("tools") or [] if t.get("type") == "function"]
        calls = bool(functions) and by_user and payload.get("tool_choice") != "none"
        if calls and asks_for_weather(said):
            call = function_call_item(functions[0]["name"], said)
            output, out_tokens, cut = [call], count_tokens(call["arguments"]), False
        else:
            fmt = text_format(payload)
            full = reply_text(self.voice, payload, said, json_mode=fmt["type"] in JSON_FORMATS)
            text, cut = truncate(full, payload.get("max_output_tokens"))
            output, out_tokens = [message_item(text, cut)], count_tokens(text)
        in_tokens = count_tokens(text_of(payload.get("instructions")), *map(item_text, items))
        if previous is not None:  # the stored conversation is read again, and paid for
            in_tokens += ((previous.get("usage") or {}).get("total_tokens")) or 0
        return response_object(payload, self.voice.model, output, usage(in_tokens, out_tokens), cut)


def input_items(payload: dict[str, Any]) -> list[dict[str, Any]]:
    raw = payload.get("input")
    if raw is None:
        return []
    if isinstance(raw, str):
        return [{"type": "message", "role": "user", "content": raw}]
    if not isinstance(raw, list):
        raise ApiError(
            400,
            "Invalid type for 'input': expected one of a string or an array of input items.",
            param="input",
            code="invalid_type",
        )
    return [item for item in raw if isinstance(item, dict)]


def item_text(item: dict[str, Any]) -> str:
    if item.get("type") == "function_call_output":
        return text_of(item.get("output"))
    return text_of(item.get("content"))


def last_said(items: list[dict[str, Any]]) -> tuple[str, bool]:
    """The text to answer, and whether a user said it (only a user's words call a tool).

    A trailing tool output is answered itself, so that an agent loop (call, output, answer)
    ends; otherwise the last user message is, as in chat."""
    if items and items[-1].get("type") == "function_call_output":
        return item_text(items[-1]), False
    for item in reversed(items):
        if item.get("type", "message") == "message" and item.get("role") == "user":
            return item_text(item), True
    return "", False


def text_format(payload: dict[str, Any]) -> dict[str, Any]:
    fmt = (payload.get("text") or {}).get("format")
    return fmt if isinstance(fmt, dict) and "type" in fmt else {"type": "text"}


def message_item(text: str, cut: bool) -> dict[str, Any]:
    part = {"type": "output_text", "annotations": [], "logprobs": [], "text": text}
    return {
        "id": new_id("msg_"),
        "type": "message",
        "status": "incomplete" if cut else "completed",
        "content": [part],
        "role": "assistant",
    }


def function_call_item(name: str, said: str) -> dict[str, Any]:
    return {
        "id": new_id("fc_"),
        "type": "function_call",
        "status": "completed",
        "arguments": weather_arguments(),
        "call_id": call_id("call_", said, name),
        "name": name,
    }


def usage(input_tokens: int, output_tokens: int) -> dict[str, Any]:
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": input_tokens + output_tokens,
    }


def echoed_tool(tool: dict[str, Any]) -> dict[str, Any]:
    """A tool as the API echoes it: function tools with every field, strict by default."""
    if tool.get("type") != "function":
        return tool
    defaults = {"description": None, "parameters": None, "strict": True}
    return {"type": "function"} | defaults | tool


def response_object(
    payload: dict[str, Any],
    model: str,
    output: list[dict[str, Any]],
    usage: dict[str, Any],
    cut: bool,
) -> dict[str, Any]:
    now = int(time.time())
    return {
        "id": new_id("resp_"),
        "object": "response",
        "created_at": now,
        "status": "incomplete" if cut else "completed",
        "background": False,
        "completed_at": None if cut else now,
        "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if cut else None,
        "instructions": payload.get("instructions"),
        "max_output_tokens": payload.get("max_output_tokens"),
        "max_tool_calls": payload.get("max_tool_calls"),
        "model": model,
        "output": output,
        "parallel_tool_calls": payload.get("parallel_tool_calls", True),
        "previous_response_id": payload.get("previous_response_id"),
        "prompt_cache_key": payload.get("prompt_cache_key"),
        "reasoning": {"effort": None, "summary": None},
        "safety_identifier": payload.get("safety_identifier"),
        "service_tier": "default",
        "store": payload.get("store", True),
        "temperature": payload.get("temperature", 1.0),
        "text": {
            "format": text_format(payload),
            "verbosity": (payload.get("text") or {}).get("verbosity", "medium"),
        },
        "tool_choice": payload.get("tool_choice", "auto"),
        "tools": [echoed_tool(t) for t in payload.get("tools") or []],
        "top_logprobs": payload.get("top_logprobs", 0),
        "top_p": payload.get("top_p", 1.0),
        "truncation": payload.get("truncation", "disabled"),
        "usage": usage,
        "user": payload.get("user"),
        "metadata": payload.get("metadata") or {},
    }


def response_events(
    response: dict[str, Any], *, obfuscate: bool = True, size: int | None = None
) -> list[dict[str, Any]]:
    """The stream of a finished response, in the order OpenAI sends it."""
    numbers = itertools.count()

    def event(kind: str, **fields: Any) -> dict[str, Any]:
        return {"type": kind, "sequence_number": next(numbers)} | fields

    def pad(delta: str) -> dict[str, str]:
        # OpenAI pads each delta with `obfuscation` characters against length side channels.
        if not obfuscate:
            return {}
        return {"obfuscation": hashlib.sha256(delta.encode()).hexdigest()[: 16 - len(delta) % 16]}

    opening = response | {"status": "in_progress", "completed_at": None, "output": []}
    opening |= {"incomplete_details": None, "usage": None}
    out = [event("response.created", response=opening)]
    out.append(event("response.in_progress", response=opening))
    for index, item in enumerate(response["output"]):
        out += _item_events(event, pad, index, item, size)
    out.append(event(CLOSING.get(response["status"], "response.completed"), response=response))
    return out


def _item_events(
    event: Event,
    pad: Callable[[str], dict[str, str]],
    index: int,
    item: dict[str, Any],
    size: int | None = None,
) -> Iterator[dict[str, Any]]:
    if item["type"] == "function_call":
        yield from _call_events(event, pad, index, item)
        return
    added = item | {"status": "in_progress", "content": []}
    yield event("response.output_item.added", output_index=index, item=added)
    where = {"item_id": item["id"], "output_index": index}
    for content_index, part in enumerate(item["content"]):
        at = where | {"content_index": content_index}
        yield event("response.content_part.added", **at, part=part | {"text": ""})
        for piece in word_pieces(part["text"], size):
            yield event("response.output_text.delta", **at, delta=piece, logprobs=[], **pad(piece))
        yield event("response.output_text.done", **at, text=part["text"], logprobs=[])
        yield event("response.content_part.done", **at, part=part)
    yield event("response.output_item.done", output_index=index, item=item)


def _call_events(
    event: Event, pad: Callable[[str], dict[str, str]], index: int, item: dict[str, Any]
) -> Iterator[dict[str, Any]]:
    added = item | {"status": "in_progress", "arguments": ""}
    yield event("response.output_item.added", output_index=index, item=added)
    where = {"item_id": item["id"], "output_index": index}
    for piece in halves(item["arguments"]):
        yield event("response.function_call_arguments.delta", **where, delta=piece, **pad(piece))
    yield event("response.function_call_arguments.done", **where, arguments=item["arguments"])
    yield event("response.output_item.done", output_index=index, item=item)
