"""The event redactor: a secret spread over SSE events or written with JSON escapes never
reaches the text a client joins, and ordinary events go out byte for byte."""

from __future__ import annotations

from typing import Any

import orjson

from proxy.event_redaction import EventRedactor
from proxy.redaction import Redactor
from proxy.sse import reassemble
from proxy.streams import iter_events

SECRET = "sk-teacher-secret-456"


def chat(*pieces: str) -> bytes:
    base = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    out = [base | {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}]
    out += [base | {"choices": [{"index": 0, "delta": {"content": p}}]} for p in pieces]
    out.append(base | {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    return b"".join(b"data: " + orjson.dumps(e) + b"\n\n" for e in out) + b"data: [DONE]\n\n"


def run(data: bytes, cuts: list[int]) -> bytes:
    stream = EventRedactor(Redactor([SECRET]))
    out, start = b"", 0
    for cut in [*cuts, len(data)]:
        out += stream.feed(data[start:cut])
        start = cut
    return out + stream.flush()


def joined(data: bytes) -> str:
    answer: Any = reassemble([data]).response
    return str(answer["choices"][0]["message"]["content"])


def test_a_secret_spread_over_events_is_redacted_wherever_the_bytes_are_cut() -> None:
    text = f"key {SECRET} end"
    data = chat(*(text[i : i + 3] for i in range(0, len(text), 3)))
    for cut in range(1, len(data), 7):
        out = run(data, [cut])
        assert SECRET.encode() not in out
        assert joined(out) == "key [redacted] end", cut


def test_a_prefix_that_is_not_a_secret_is_released_before_the_finish() -> None:
    out = run(chat("ends with sk-te", "a party"), [])
    assert joined(out) == "ends with sk-tea party"
    held = run(chat("last words sk-tea"), [])  # the stream ends: the prefix was no secret
    assert joined(held) == "last words sk-tea"
    events = [e for _, e in iter_events([held])]
    assert events[-1]["choices"][0]["finish_reason"] == "stop"  # released before the finish


def test_json_escapes_are_decoded_before_matching() -> None:
    escaped = "".join(f"\\u{ord(c):04x}" for c in SECRET)
    event = b'data: {"choices":[{"index":0,"delta":{"content":"k ' + escaped.encode() + b'"}}]}'
    out = run(event + b"\n\n", [])
    assert joined(out) == "k [redacted]"


def test_events_without_secrets_pass_byte_for_byte() -> None:
    data = chat("hello", " world") + b": keep-alive\n\n"
    assert run(data, [5, 40]) == data


def test_anthropic_deltas_are_joined_across_a_ping() -> None:
    def event(name: str, body: dict[str, Any]) -> bytes:
        return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(body) + b"\n\n"

    def delta(text: str) -> bytes:
        body = {"type": "content_block_delta", "index": 0}
        return event("content_block_delta", body | {"delta": {"type": "text_delta", "text": text}})

    data = delta("a sk-teach") + event("ping", {"type": "ping"}) + delta("er-secret-456 b")
    data += event("content_block_stop", {"type": "content_block_stop", "index": 0})
    out = run(data, [])
    texts = [e["delta"]["text"] for name, e in iter_events([out]) if name == "content_block_delta"]
    assert "".join(texts) == "a [redacted] b"
