"""Redacting an SSE stream on the text its events add up to, not only on its bytes.

A client joins a stream's deltas (`choices[].delta.content`, a Responses
`response.output_text.delta`, an Anthropic `content_block_delta`) into one text: a key sent a
few characters an event is whole there although no event's bytes hold it, and one written with
JSON escapes (`\\u0073\\u006b...`) is whole once decoded. So each event is parsed, and each
delta's text is redacted together with what its channel (a choice, a tool call, a content part)
held back before it.

Latency: only the end of a delta that could still begin a secret is held back (at most the
longest secret's length minus one characters); it goes out at the front of the channel's next
delta, or in an event of its own just before the first event that adds no text (a finish chunk,
`[DONE]`, a `.done` or `content_block_stop` event), or at the end of the stream. Ordinary text
is never held, and an event is held only until its blank line arrives (no client reads half an
event). An event whose text did not change goes out byte for byte.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from proxy.redaction import Redactor

MAX_EVENT = 1 << 20  # a stream with no event boundary this far in is not SSE: bytes only
_ESCAPES = (b"\\u", b"\\/")
_DELTA_TEXT = ("content", "reasoning_content", "reasoning", "refusal")
_BLOCK_TEXT = ("text", "partial_json", "thinking")
Channel = tuple[Any, ...]
Slot = tuple[Channel, dict[str, Any], str]  # a channel, the object holding its text, the key


@dataclass
class _Held:
    text: str
    head: bytes  # the event's lines before its data (`event: name`)
    event: bytes  # the channel's last event, the shape its held text is sent in


class EventRedactor:
    """Redacts a `text/event-stream` event by event, secrets spread over events included."""

    def __init__(self, redactor: Redactor) -> None:
        self.redactor = redactor
        self._buffer = b""
        self._held: dict[Channel, _Held] = {}
        self._raw = redactor.stream()  # for a stream that turns out not to be SSE
        self._not_sse = False

    def feed(self, chunk: bytes) -> bytes:
        """What can be sent of `chunk` now: its whole events, redacted."""
        if self._not_sse:
            return self._raw.feed(chunk)
        self._buffer += chunk
        out = []
        while (end := _boundary(self._buffer)) > 0:
            raw, self._buffer = self._buffer[:end], self._buffer[end:]
            out.append(self._event(raw))
        if len(self._buffer) > MAX_EVENT:
            out.append(self._release())
            self._not_sse = True
            out.append(self._raw.feed(self._buffer))
            self._buffer = b""
        return b"".join(out)

    def flush(self) -> bytes:
        """The held text, and an unfinished last event, at the end of the stream."""
        out = self._release() + self._raw.feed(self._buffer) + self._raw.flush()
        self._buffer = b""
        return out

    def _event(self, raw: bytes) -> bytes:
        raw = self.redactor.bytes(raw)
        head, data = _fields(raw)
        parsed = _object(data)
        if parsed is None:  # `[DONE]` ends every channel; a comment or keep-alive none
            return (self._release() if data.strip() == b"[DONE]" else b"") + raw
        changed = False
        if b"\\" in data and (_ESCAPES[0] in data or _ESCAPES[1] in data):
            parsed, changed = self.redactor.strings(parsed)
        slots = list(_slots(parsed))
        released = b"" if slots else self._release(_ended(parsed))
        for channel, holder, key in slots:
            held = self._held.pop(channel, None)
            text = self.redactor.text((held.text if held else "") + holder[key])
            keep = self.redactor.could_begin(text)
            sent = text[: len(text) - keep]
            if sent != holder[key]:
                holder[key], changed = sent, True
            if keep:
                self._held[channel] = _Held(text[-keep:], head, orjson.dumps(parsed))
        return released + (head + b"data: " + orjson.dumps(parsed) + b"\n\n" if changed else raw)

    def _release(self, ended: set[int] | None = None) -> bytes:
        """The held text of the channels that ended (None: all), each in an event of its
        channel's shape carrying only it."""
        out = []
        for channel in list(self._held):
            if ended is None or (channel[0] != "item" and channel[1] in ended):
                held = self._held.pop(channel)
                event = orjson.loads(held.event)
                _only(event, channel, held.text)
                out.append(held.head + b"data: " + orjson.dumps(event) + b"\n\n")
        return b"".join(out)


def _boundary(buffer: bytes) -> int:
    """Where the first whole event of `buffer` ends (0: none yet)."""
    lf, crlf = buffer.find(b"\n\n"), buffer.find(b"\r\n\r\n")
    if lf >= 0 and (crlf < 0 or lf < crlf):
        return lf + 2
    return crlf + 4 if crlf >= 0 else 0


def _fields(raw: bytes) -> tuple[bytes, bytes]:
    """(the event's other lines, its data joined) of one event."""
    if raw.startswith(b"data: ") and raw.endswith(b"\n\n") and raw.count(b"\n") == 2:
        return b"", raw[6:-2]  # the common event: one data line
    head, data = [], []
    for line in raw.replace(b"\r\n", b"\n").split(b"\n"):
        if line.startswith(b"data:"):
            data.append(line[5:].removeprefix(b" "))
        elif line:
            head.append(line + b"\n")
    return b"".join(head), b"\n".join(data)


def _object(data: bytes) -> dict[str, Any] | None:
    if not data.startswith(b"{"):
        return None
    try:
        parsed = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    return parsed if isinstance(parsed, dict) else None


def _ended(event: dict[str, Any]) -> set[int] | None:
    """The choices an event without text ends (its finish chunk); None: every channel. A ping
    ends none: text held across it may still be the start of a secret."""
    if event.get("type") == "ping":
        return set()
    choices = event.get("choices")
    if isinstance(choices, list) and choices:
        return {_index(c.get("index")) for c in choices if isinstance(c, dict)}
    return None


def _slots(event: dict[str, Any]) -> Iterator[Slot]:
    """Every piece of text the event adds to a channel, in chat, legacy completions, Responses
    and Anthropic Messages streams."""
    choices = event.get("choices")
    if isinstance(choices, list):
        for choice in choices:
            if isinstance(choice, dict):
                yield from _choice_slots(choice)
        return
    kind, delta = event.get("type"), event.get("delta")
    if kind == "content_block_delta" and isinstance(delta, dict):
        for key in _BLOCK_TEXT:
            if isinstance(delta.get(key), str):
                yield ("block", _index(event.get("index")), key), delta, key
    elif isinstance(kind, str) and kind.endswith(".delta") and isinstance(delta, str):
        where = (event.get(k) for k in ("output_index", "content_index", "summary_index"))
        yield ("item", kind, *map(_index, where)), event, "delta"


def _choice_slots(choice: dict[str, Any]) -> Iterator[Slot]:
    i = _index(choice.get("index"))
    if isinstance(choice.get("text"), str):  # a legacy completion
        yield ("text", i), choice, "text"
    delta = choice.get("delta")
    if not isinstance(delta, dict):
        return
    for key in _DELTA_TEXT:
        if isinstance(delta.get(key), str):
            yield ("delta", i, key), delta, key
    calls = delta.get("tool_calls")
    for call in calls if isinstance(calls, list) else []:
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict) and isinstance(function.get("arguments"), str):
            yield ("call", i, _index(call.get("index"))), function, "arguments"


def _only(event: dict[str, Any], channel: Channel, text: str) -> None:
    """Make `event` carry `text` on `channel` and nothing a client would count twice (a role,
    a tool call's name, logprobs, a finish reason, usage)."""
    event.pop("usage", None)
    for choice in event.get("choices") or []:
        if not isinstance(choice, dict):
            continue
        choice.pop("logprobs", None)
        if "finish_reason" in choice:
            choice["finish_reason"] = None
        delta = choice.get("delta")
        if isinstance(delta, dict):
            delta.pop("role", None)
            for call in delta.get("tool_calls") or []:
                if isinstance(call, dict):
                    call.pop("id", None), call.pop("type", None)
                    if isinstance(call.get("function"), dict):
                        call["function"].pop("name", None)
    for found, holder, key in list(_slots(event)):
        holder[key] = text if found == channel else ""


def _index(value: Any) -> int:
    return value if isinstance(value, int) else 0
