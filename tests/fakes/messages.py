"""`/v1/messages` of the fake teacher: Anthropic's Messages API, as anthropic-python calls it.

A Message (`msg_...`) with a `text` block, or a `tool_use` block when a tool is offered and
the user's text mentions "weather". A stream is Anthropic's named events: `message_start`
(the message with no content yet), per block `content_block_start`, deltas (`text_delta` per
word, `input_json_delta` pieces) and `content_block_stop`, a `ping` after the first block's
start as Anthropic sends it, then `message_delta` (stop reason, output tokens) and
`message_stop`. Validation errors are Anthropic's, `max_tokens` and `messages` required.
"""

from __future__ import annotations

import json
from typing import Any

from tests.fakes.answers import (
    WEATHER_ARGUMENTS,
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
    word_pieces,
)
from tests.fakes.errors import ApiError
from tests.fakes.wire import Reply, typed_sse

REQUIRED = ("model", "max_tokens", "messages")


class MessagesApi:
    def __init__(self, voice: Voice) -> None:
        self.voice = voice

    def create(self, payload: dict[str, Any]) -> Reply:
        for name in REQUIRED:
            if name not in payload:
                raise ApiError(400, f"{name}: Field required")
        if not isinstance(payload["messages"], list) or not payload["messages"]:
            raise ApiError(400, "messages: at least one message is required")
        message = finished(self.voice, self.message(payload))
        if payload.get("stream"):
            return Reply(stream=typed_sse(message_events(message, self.voice.delta_chars)))
        return Reply(body=message)

    def count(self, payload: dict[str, Any]) -> Reply:
        """`/v1/messages/count_tokens`: the input tokens `create` would report."""
        if not isinstance(payload.get("messages"), list) or not payload["messages"]:
            raise ApiError(400, "messages: Field required")
        texts = (block_text(m.get("content")) for m in payload["messages"])
        return Reply(body={"input_tokens": count_tokens(text_of(payload.get("system")), *texts)})

    def message(self, payload: dict[str, Any]) -> dict[str, Any]:
        """The non-streaming answer to one request, before the `mutate` hook."""
        messages = payload["messages"]
        said, by_user = last_said(messages[-1])
        tools = [t for t in payload.get("tools") or [] if isinstance(t, dict) and "name" in t]
        refused = (payload.get("tool_choice") or {}).get("type") == "none"
        if tools and by_user and not refused and asks_for_weather(said):
            name = tools[0]["name"]
            use = {"type": "tool_use", "id": call_id("toolu_", said, name), "name": name}
            content: list[dict[str, Any]] = [use | {"input": dict(WEATHER_ARGUMENTS)}]
            stop, out_tokens = "tool_use", count_tokens(json.dumps(WEATHER_ARGUMENTS))
        else:
            fmt = (payload.get("output_config") or {}).get("format") or {}
            json_mode = fmt.get("type") == "json_schema"
            full = reply_text(self.voice, payload, said, json_mode=json_mode)
            text, cut = truncate(full, payload["max_tokens"])
            content = [{"type": "text", "text": text}]
            stop, out_tokens = ("max_tokens" if cut else "end_turn"), count_tokens(text)
        in_tokens = count_tokens(
            text_of(payload.get("system")), *(block_text(m.get("content")) for m in messages)
        )
        return {
            "id": new_id("msg_"),
            "type": "message",
            "role": "assistant",
            "model": self.voice.model,
            "content": content,
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": usage(in_tokens, out_tokens),
        }


def block_text(content: Any) -> str:
    """The words of a message's content: text blocks, and the text inside tool results."""
    if not isinstance(content, list):
        return text_of(content)
    texts = [text_of([b]) for b in content if isinstance(b, dict) and b.get("type") == "text"]
    results = [
        text_of(b.get("content"))
        for b in content
        if isinstance(b, dict) and b.get("type") == "tool_result"
    ]
    return " ".join(t for t in texts + results if t)


def last_said(message: dict[str, Any]) -> tuple[str, bool]:
    """The text to answer and whether it is a user's own words (only those call a tool): the
    text blocks of the last message, else the tool results it carries back."""
    by_user = message.get("role") == "user"
    content = message.get("content")
    if not isinstance(content, list):
        return text_of(content), by_user
    blocks = [b for b in content if isinstance(b, dict)]
    texts = [text_of([b]) for b in blocks if b.get("type") == "text"]
    if texts:
        return " ".join(texts), by_user
    results = [text_of(b.get("content")) for b in blocks if b.get("type") == "tool_result"]
    return " ".join(results), False


def usage(input_tokens: int, output_tokens: int) -> dict[str, Any]:
    return {
        "input_tokens": input_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": output_tokens,
        "service_tier": "standard",
    }


def message_events(message: dict[str, Any], size: int | None = None) -> list[dict[str, Any]]:
    """The stream of a finished message, in the order Anthropic sends it."""
    # message_start counts the first output token; message_delta carries the final count.
    start_usage = message["usage"] | {"output_tokens": 1}
    start = message | {"content": [], "stop_reason": None, "usage": start_usage}
    out: list[dict[str, Any]] = [{"type": "message_start", "message": start}]
    for index, block in enumerate(message["content"]):
        out.append({"type": "content_block_start", "index": index, "content_block": opened(block)})
        if index == 0:
            out.append({"type": "ping"})
        pieces = deltas(block, size)
        out += [{"type": "content_block_delta", "index": index, "delta": d} for d in pieces]
        out.append({"type": "content_block_stop", "index": index})
    stopped = {"stop_reason": message["stop_reason"], "stop_sequence": message["stop_sequence"]}
    usage_delta = {"output_tokens": message["usage"]["output_tokens"]}
    out.append({"type": "message_delta", "delta": stopped, "usage": usage_delta})
    out.append({"type": "message_stop"})
    return out


def opened(block: dict[str, Any]) -> dict[str, Any]:
    """A block as its content_block_start shows it: before any delta."""
    if block["type"] == "tool_use":
        return block | {"input": {}}
    return block | {"text": ""}


def deltas(block: dict[str, Any], size: int | None = None) -> list[dict[str, Any]]:
    if block["type"] == "tool_use":
        # Anthropic opens a tool's input with an empty piece, then the JSON in cuts.
        pieces = ["", *halves(json.dumps(block["input"]))]
        return [{"type": "input_json_delta", "partial_json": p} for p in pieces]
    return [{"type": "text_delta", "text": p} for p in word_pieces(block["text"], size)]
