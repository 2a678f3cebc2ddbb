"""Server-sent events of chat completions: parsing, and reassembly into one response.

A stream is logged in the same shape as a non-streaming response, so curation and retrain
never need to know how an answer arrived. Reassembly runs in the logbook's writer thread.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

DONE = b"[DONE]"


def iter_event_data(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """The `data:` payload of each event of a finished byte stream, split at any points."""
    # Join first: a chunk may end inside an event, or between \r and \n.
    data = b"".join(chunks).replace(b"\r\n", b"\n")
    for event in data.split(b"\n\n"):
        if event.startswith(b"data:") and b"\n" not in event:
            yield event[5:].lstrip(b" ")  # the common case: one data line
        elif event.strip():
            payload = _event_data(event)
            if payload is not None:
                yield payload


def _event_data(event: bytes) -> bytes | None:
    lines = [line[5:].lstrip(b" ") for line in event.split(b"\n") if line.startswith(b"data:")]
    return b"\n".join(lines) if lines else None


@dataclass
class _Choice:
    index: int
    role: str = "assistant"
    content: list[str] = field(default_factory=list)
    refusal: list[str] = field(default_factory=list)
    tool_calls: dict[int, dict[str, Any]] = field(default_factory=dict)
    logprobs: list[Any] = field(default_factory=list)
    has_logprobs: bool = False
    finish_reason: str | None = None

    def add(self, choice: dict[str, Any]) -> None:
        delta = choice.get("delta") or {}
        if delta.get("role"):
            self.role = delta["role"]
        if delta.get("content"):
            self.content.append(delta["content"])
        if delta.get("refusal"):
            self.refusal.append(delta["refusal"])
        for call in delta.get("tool_calls") or []:
            self._add_tool_call(call)
        if choice.get("logprobs") is not None:
            self.has_logprobs = True
            self.logprobs.extend(choice["logprobs"].get("content") or [])
        if choice.get("finish_reason"):
            self.finish_reason = choice["finish_reason"]

    def _add_tool_call(self, call: dict[str, Any]) -> None:
        slot = self.tool_calls.setdefault(
            int(call.get("index", len(self.tool_calls))),
            {"id": None, "type": "function", "function": {"name": "", "arguments": ""}},
        )
        if call.get("id"):
            slot["id"] = call["id"]
        if call.get("type"):
            slot["type"] = call["type"]
        function = call.get("function") or {}
        if function.get("name"):
            slot["function"]["name"] += function["name"]
        if function.get("arguments"):
            slot["function"]["arguments"] += function["arguments"]

    def finish(self) -> dict[str, Any]:
        message: dict[str, Any] = {
            "role": self.role,
            "content": "".join(self.content) if self.content else None,
        }
        if self.refusal:
            message["refusal"] = "".join(self.refusal)
        if self.tool_calls:
            message["tool_calls"] = [self.tool_calls[i] for i in sorted(self.tool_calls)]
        out: dict[str, Any] = {
            "index": self.index,
            "message": message,
            "finish_reason": self.finish_reason,
        }
        if self.has_logprobs:
            out["logprobs"] = {"content": self.logprobs}
        return out


@dataclass
class Reassembled:
    response: dict[str, Any] | None  # chat.completion shape; None when nothing arrived
    done: bool  # the stream ended with [DONE]
    error: dict[str, Any] | None  # an error event sent inside the stream


def reassemble(chunks: Iterable[bytes]) -> Reassembled:
    """Merge a chat.completion.chunk stream into one chat.completion object."""
    head: dict[str, Any] = {}
    choices: dict[int, _Choice] = {}
    usage: Any = None
    done, error = False, None
    for data in iter_event_data(chunks):
        if data.strip() == DONE:
            done = True
            continue
        try:
            event = orjson.loads(data)
        except orjson.JSONDecodeError:
            continue
        if not isinstance(event, dict):
            continue
        if "error" in event:
            error = event["error"]
            continue
        for key in ("id", "created", "model", "system_fingerprint", "service_tier"):
            if event.get(key) is not None:
                head.setdefault(key, event[key])
        for choice in event.get("choices") or []:
            index = int(choice.get("index", 0))
            choices.setdefault(index, _Choice(index)).add(choice)
        if event.get("usage"):
            usage = event["usage"]
    if not head and not choices:
        return Reassembled(None, done, error)
    response = {"id": head.get("id"), "object": "chat.completion", **head}
    response["choices"] = [choices[i].finish() for i in sorted(choices)]
    response["usage"] = usage
    return Reassembled(response, done, error)
