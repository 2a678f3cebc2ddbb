"""Typed event streams of the Responses API and Anthropic Messages: reassembly into the object
the non-streaming call returns, so every later stage sees one shape per surface.

A Responses stream ends with `response.completed` (or `.incomplete`, `.failed`), whose data
carries the whole final response: that is the logged answer. An Anthropic stream is rebuilt
from its events: `message_start` holds the message, content blocks grow with their deltas, and
`message_delta` brings the stop reason and the final usage; `message_stop` ends it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import orjson

from proxy.sse import Reassembled

# The event line that opens each surface's last event: a JSON string cannot hold a raw
# newline, so answer text can never look like one.
RESPONSES_DONE = (b"event: response.completed\n", b"event: response.incomplete\n",
                  b"event: response.failed\n")  # fmt: skip
MESSAGES_DONE = (b"event: message_stop\n",)


def iter_events(chunks: Iterable[bytes]) -> Iterator[tuple[str | None, Any]]:
    """(event name, parsed data) of each event of a finished stream split at any points."""
    data = b"".join(chunks).replace(b"\r\n", b"\n")
    for block in data.split(b"\n\n"):
        name, lines = None, []
        for line in block.split(b"\n"):
            if line.startswith(b"event:"):
                name = line[6:].strip().decode("utf-8", "replace")
            elif line.startswith(b"data:"):
                lines.append(line[5:].lstrip(b" "))
        if not lines:
            continue
        try:
            parsed = orjson.loads(b"\n".join(lines))
        except orjson.JSONDecodeError:
            continue
        if isinstance(parsed, dict):
            yield name or parsed.get("type"), parsed


def reassemble_responses(chunks: Iterable[bytes]) -> Reassembled:
    """The final Response object of a Responses stream."""
    final, latest, error = None, None, None
    for name, event in iter_events(chunks):
        response = event.get("response")
        if isinstance(response, dict):
            latest = response
        if name in ("response.completed", "response.incomplete", "response.failed"):
            final = response if isinstance(response, dict) else latest
            if name == "response.failed" and isinstance(final, dict):
                error = final.get("error") or {"message": "the response failed"}
        elif name == "error":
            error = event.get("error") if isinstance(event.get("error"), dict) else event
    return Reassembled(final or latest, final is not None, error)


def reassemble_messages(chunks: Iterable[bytes]) -> Reassembled:
    """The Message an Anthropic stream describes."""
    message: dict[str, Any] | None = None
    blocks: dict[int, dict[str, Any]] = {}
    partial: dict[int, list[str]] = {}
    done, error = False, None
    for name, event in iter_events(chunks):
        if name == "message_start" and isinstance(event.get("message"), dict):
            message = dict(event["message"])
        elif name == "content_block_start" and isinstance(event.get("content_block"), dict):
            blocks[_index(event)] = dict(event["content_block"])
        elif name == "content_block_delta":
            _add_delta(blocks, partial, _index(event), event.get("delta") or {})
        elif name == "content_block_stop":
            _finish_block(blocks, partial, _index(event))
        elif name == "message_delta" and message is not None:
            message.update({k: v for k, v in (event.get("delta") or {}).items()})
            if isinstance(event.get("usage"), dict):
                message["usage"] = {**(message.get("usage") or {}), **event["usage"]}
        elif name == "message_stop":
            done = True
        elif name == "error":
            error = event.get("error") if isinstance(event.get("error"), dict) else event
    if message is None:
        return Reassembled(None, done, error)
    for index in list(partial):
        _finish_block(blocks, partial, index)
    message["content"] = [blocks[i] for i in sorted(blocks)]
    return Reassembled(message, done, error)


def _index(event: dict[str, Any]) -> int:
    index = event.get("index")
    return index if isinstance(index, int) else 0


def _add_delta(
    blocks: dict[int, dict[str, Any]], partial: dict[int, list[str]], i: int, delta: Any
) -> None:
    if not isinstance(delta, dict):
        return
    block = blocks.setdefault(i, {"type": "text", "text": ""})
    kind = delta.get("type")
    if kind == "text_delta":
        block["text"] = str(block.get("text", "")) + str(delta.get("text", ""))
    elif kind == "input_json_delta":
        partial.setdefault(i, []).append(str(delta.get("partial_json", "")))
    elif kind == "thinking_delta":
        block["thinking"] = str(block.get("thinking", "")) + str(delta.get("thinking", ""))


def _finish_block(blocks: dict[int, dict[str, Any]], partial: dict[int, list[str]], i: int) -> None:
    pieces = partial.pop(i, None)
    if pieces is not None and i in blocks:
        try:
            blocks[i]["input"] = orjson.loads("".join(pieces) or "{}")
        except orjson.JSONDecodeError:
            blocks[i]["input"] = {"raw": "".join(pieces)}


def reassemble_completions(chunks: Iterable[bytes]) -> Reassembled:
    """A legacy text_completion stream as one text_completion object."""
    head: dict[str, Any] = {}
    texts: dict[int, list[str]] = {}
    finish: dict[int, Any] = {}
    chunks = list(chunks)
    usage, error = None, None
    for _, event in iter_events(chunks):
        if "error" in event:
            error = event["error"]
            continue
        for key in ("id", "created", "model"):
            if event.get(key) is not None:
                head.setdefault(key, event[key])
        for choice in event.get("choices") or []:
            if not isinstance(choice, dict):
                continue
            i = _index(choice)
            texts.setdefault(i, []).append(str(choice.get("text") or ""))
            if choice.get("finish_reason"):
                finish[i] = choice["finish_reason"]
        usage = event.get("usage") or usage
    done = b"data: [DONE]" in b"".join(chunks)
    if not head and not texts:
        return Reassembled(None, done, error)
    choices = [{"index": i, "text": "".join(texts[i]), "finish_reason": finish.get(i)}
               for i in sorted(texts)]  # fmt: skip
    response = {"object": "text_completion", **head, "choices": choices, "usage": usage}
    return Reassembled(response, done, error)
