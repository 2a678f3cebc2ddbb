"""Chat answers in the Responses API's and Anthropic's shapes, whole or as their event streams.

A Responses or Messages request that a chat model answers (a student, or a teacher reached
through chat) is sent in chat form (`logbook.surfaces`); its answer comes back here. Both
directions of a stream are incremental: each chat chunk becomes the surface's events as it
arrives, so streaming stays streaming. A whole answer goes through the same writers, fed the
chunks of one completion, so the two shapes always agree.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import orjson

Json = dict[str, Any]


def completion_chunks(response: Json, payload: Json) -> list[Json]:
    """A whole chat.completion as the chat.completion.chunk dicts a stream of it would carry."""
    created = response.get("created", int(time.time()))
    head = {"id": response.get("id"), "object": "chat.completion.chunk", "created": created,
            "model": response.get("model")}  # fmt: skip
    chunks: list[Json] = []
    for choice in response.get("choices") or []:
        i, message = choice.get("index", 0), choice.get("message") or {}
        chunks.append(head | {"choices": [{"index": i, "delta": {"role": "assistant"}}]})
        delta: Json = {"index": i, "delta": {"content": message.get("content") or ""}}
        if message.get("tool_calls"):
            calls = [{"index": n, **call} for n, call in enumerate(message["tool_calls"])]
            delta["delta"]["tool_calls"] = calls
        if choice.get("logprobs"):
            delta["logprobs"] = choice["logprobs"]
        chunks.append(head | {"choices": [delta]})
        end = {"index": i, "delta": {}, "finish_reason": choice.get("finish_reason")}
        chunks.append(head | {"choices": [end]})
    if (payload.get("stream_options") or {}).get("include_usage") or payload.get("_usage"):
        chunks.append(head | {"choices": [], "usage": response.get("usage")})
    return chunks


def sse(events: list[Json], named: bool = False) -> bytes:
    """Server-sent events; `named` adds the `event:` line the typed surfaces use."""
    out = []
    for event in events:
        head = b"event: " + str(event.get("type")).encode() + b"\n" if named else b""
        out.append(head + b"data: " + orjson.dumps(event) + b"\n\n")
    return b"".join(out)


class ChatChunks:
    """Parses a chat SSE byte stream, cut anywhere, into chunk dicts as they complete."""

    def __init__(self) -> None:
        self._buffer = b""
        self.done = False

    def feed(self, data: bytes) -> list[Json]:
        self._buffer += data.replace(b"\r\n", b"\n")
        out = []
        while b"\n\n" in self._buffer:
            event, self._buffer = self._buffer.split(b"\n\n", 1)
            lines = [ln[5:].strip() for ln in event.split(b"\n") if ln.startswith(b"data:")]
            payload = b"\n".join(lines)
            if payload == b"[DONE]":
                self.done = True
            elif payload:
                try:
                    parsed = orjson.loads(payload)
                except orjson.JSONDecodeError:
                    continue
                if isinstance(parsed, dict):
                    out.append(parsed)
        return out


class _Writer:
    """What both surface writers share: text and tool calls collected from chat chunks."""

    def __init__(self) -> None:
        self.text: list[str] = []
        self.calls: dict[int, Json] = {}
        self.finish_reason: str | None = None
        self.usage: Json | None = None
        self.error: Json | None = None

    def _collect(self, chunk: Json) -> tuple[str, list[tuple[int, Json, bool]]]:
        """(new text, [(tool index, call so far, first time seen)]) of one chunk."""
        if isinstance(chunk.get("error"), dict):
            self.error = chunk["error"]
        if isinstance(chunk.get("usage"), dict):
            self.usage = chunk["usage"]
        text, calls = "", []
        for choice in chunk.get("choices") or []:
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue  # these surfaces have one answer
            delta = choice.get("delta") or {}
            if isinstance(delta.get("content"), str):
                text += delta["content"]
            for call in delta.get("tool_calls") or []:
                index = int(call.get("index", len(self.calls)))
                new = index not in self.calls
                slot = self.calls.setdefault(index, {"id": None, "name": "", "arguments": ""})
                function = call.get("function") or {}
                slot["id"] = call.get("id") or slot["id"]
                slot["name"] += function.get("name") or ""
                piece = function.get("arguments") or ""
                slot["arguments"] += piece
                calls.append((index, {**slot, "delta": piece}, new))
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
        self.text.append(text)
        return text, calls


class ResponsesWriter(_Writer):
    """Chat chunks in, Responses API events out; `response()` is the final object."""

    def __init__(self, request: Json, model: str, response_id: str | None = None) -> None:
        super().__init__()
        self.request, self.model = request, model
        self.id = response_id or f"resp_{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.seq = 0
        self.message_id = f"msg_{uuid.uuid4().hex[:24]}"
        self.message_at: int | None = None  # output index of the message item, once open
        self.call_at: dict[int, int] = {}  # tool index -> output index

    def _event(self, kind: str, **fields: Any) -> Json:
        self.seq += 1
        return {"type": kind, "sequence_number": self.seq - 1, **fields}

    def start(self) -> list[Json]:
        skeleton = self.response(status="in_progress", output=[])
        return [self._event("response.created", response=skeleton),
                self._event("response.in_progress", response=skeleton)]  # fmt: skip

    def feed(self, chunk: Json) -> list[Json]:
        text, calls = self._collect(chunk)
        events: list[Json] = []
        if text:
            if self.message_at is None:
                events += self._open_message()
            events.append(self._event("response.output_text.delta", item_id=self.message_id,
                                      output_index=self.message_at, content_index=0,
                                      delta=text, logprobs=[]))  # fmt: skip
        for index, call, new in calls:
            if new:
                self.call_at[index] = self._next_index()
                events.append(self._event("response.output_item.added",
                                          output_index=self.call_at[index],
                                          item=self._call_item(call, "in_progress")))  # fmt: skip
            if call["delta"]:
                events.append(self._event("response.function_call_arguments.delta",
                                          item_id=_call_item_id(call),
                                          output_index=self.call_at[index],
                                          delta=call["delta"]))  # fmt: skip
        return events

    def finish(self) -> list[Json]:
        events: list[Json] = []
        if self.message_at is None and not self.calls:
            events += self._open_message()  # an empty answer is still a message
        if self.message_at is not None:
            text, at = "".join(self.text), self.message_at
            part = {"type": "output_text", "text": text, "annotations": []}
            events += [
                self._event("response.output_text.done", item_id=self.message_id,
                            output_index=at, content_index=0, text=text, logprobs=[]),
                self._event("response.content_part.done", item_id=self.message_id,
                            output_index=at, content_index=0, part=part),
                self._event("response.output_item.done", output_index=at,
                            item=self._message_item("completed")),
            ]  # fmt: skip
        for index, call in sorted(self.calls.items()):
            at = self.call_at[index]
            events += [
                self._event("response.function_call_arguments.done",
                            item_id=_call_item_id(call), output_index=at,
                            arguments=call["arguments"]),
                self._event("response.output_item.done", output_index=at,
                            item=self._call_item(call, "completed")),
            ]  # fmt: skip
        kind = "response.incomplete" if self.finish_reason == "length" else "response.completed"
        events.append(self._event(kind, response=self.response()))
        return events

    def response(self, status: str | None = None, output: list[Json] | None = None) -> Json:
        """The Response object (its final form unless `status` and `output` say otherwise)."""
        if status is None:
            status = "incomplete" if self.finish_reason == "length" else "completed"
        if output is None:
            items = [(self.message_at, self._message_item("completed"))]
            if self.message_at is None and not self.calls:
                items = [(0, self._message_item("completed"))]
            items += [(self.call_at.get(i, 1 + i), self._call_item(c, "completed"))
                      for i, c in self.calls.items()]  # fmt: skip
            ordered = sorted(items, key=lambda p: p[0] or 0)
            output = [item for at, item in ordered if at is not None]
        usage = self.usage or {}
        prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
        body: Json = {
            "id": self.id, "object": "response", "created_at": self.created, "status": status,
            "model": self.model, "output": output,
            "parallel_tool_calls": self.request.get("parallel_tool_calls", True),
            "tool_choice": self.request.get("tool_choice", "auto"),
            "tools": self.request.get("tools") or [],
            "text": self.request.get("text") or {"format": {"type": "text"}},
            "instructions": self.request.get("instructions"),
            "incomplete_details": (
                {"reason": "max_output_tokens"} if status == "incomplete" else None
            ),
            "error": None, "metadata": self.request.get("metadata") or {},
        }  # fmt: skip
        if isinstance(prompt, int) and isinstance(completion, int):
            body["usage"] = {
                "input_tokens": prompt, "output_tokens": completion,
                "total_tokens": prompt + completion,
                "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
                "output_tokens_details": {"reasoning_tokens": 0},
            }  # fmt: skip
        return body

    def _next_index(self) -> int:
        return (self.message_at is not None) + len(self.call_at)

    def _open_message(self) -> list[Json]:
        self.message_at = self._next_index()
        part = {"type": "output_text", "text": "", "annotations": []}
        return [
            self._event("response.output_item.added", output_index=self.message_at,
                        item=self._message_item("in_progress", text="")),
            self._event("response.content_part.added", item_id=self.message_id,
                        output_index=self.message_at, content_index=0, part=part),
        ]  # fmt: skip

    def _message_item(self, status: str, text: str | None = None) -> Json:
        content = "".join(self.text) if text is None else text
        part = {"type": "output_text", "text": content, "annotations": []}
        return {"type": "message", "id": self.message_id, "role": "assistant", "status": status,
                "content": [part]}  # fmt: skip

    def _call_item(self, call: Json, status: str) -> Json:
        return {"type": "function_call", "id": _call_item_id(call), "call_id": call["id"],
                "name": call["name"], "arguments": call["arguments"], "status": status}  # fmt: skip


def _call_item_id(call: Json) -> str:
    return f"fc_{call['id']}"


class AnthropicWriter(_Writer):
    """Chat chunks in, Anthropic Messages events out; `message()` is the final Message."""

    STOP: ClassVar[dict[str, str]] = {
        "stop": "end_turn",
        "length": "max_tokens",
        "tool_calls": "tool_use",
    }

    def __init__(self, model: str, message_id: str | None = None) -> None:
        super().__init__()
        self.model = model
        self.id = message_id or f"msg_{uuid.uuid4().hex[:24]}"
        self.blocks: list[Json] = []  # content blocks so far
        self.open: int | None = None  # the block that has started and not stopped
        self.text_block: int | None = None
        self.call_block: dict[int, int] = {}  # tool index -> block index

    def start(self) -> list[Json]:
        message = self.message(content=[], stop_reason=None)
        message["usage"] = {"input_tokens": 0, "output_tokens": 0}
        return [{"type": "message_start", "message": message}, {"type": "ping"}]

    def feed(self, chunk: Json) -> list[Json]:
        text, calls = self._collect(chunk)
        events: list[Json] = []
        if text:
            if self.text_block is None or self.open != self.text_block:
                self.text_block = len(self.blocks)
                events += self._begin({"type": "text", "text": ""})
            self.blocks[self.text_block]["text"] += text
            events.append({"type": "content_block_delta", "index": self.text_block,
                           "delta": {"type": "text_delta", "text": text}})  # fmt: skip
        for index, call, new in calls:
            if new:
                self.call_block[index] = len(self.blocks)
                events += self._begin({"type": "tool_use", "id": call["id"],
                                       "name": call["name"], "input": {}})  # fmt: skip
            if call["delta"]:
                events.append({"type": "content_block_delta", "index": self.call_block[index],
                               "delta": {"type": "input_json_delta",
                                         "partial_json": call["delta"]}})  # fmt: skip
        return events

    def finish(self) -> list[Json]:
        events = self._begin({"type": "text", "text": ""}) if not self.blocks else []
        events += self._stop()
        usage = {"output_tokens": int((self.usage or {}).get("completion_tokens") or 0)}
        stop = self.STOP.get(self.finish_reason or "stop", "end_turn")
        delta = {"stop_reason": stop, "stop_sequence": None}
        return [*events, {"type": "message_delta", "delta": delta, "usage": usage},
                {"type": "message_stop"}]  # fmt: skip

    def _begin(self, block: Json) -> list[Json]:
        events = self._stop()
        self.open = len(self.blocks)
        self.blocks.append(block)
        return [*events, {"type": "content_block_start", "index": self.open,
                          "content_block": dict(block)}]  # fmt: skip

    def _stop(self) -> list[Json]:
        if self.open is None:
            return []
        index, self.open = self.open, None
        return [{"type": "content_block_stop", "index": index}]

    def message(self, content: list[Json] | None = None, stop_reason: Any = "unset") -> Json:
        """The Message (its final form unless told otherwise)."""
        blocks = self._final_blocks() if content is None else content
        if stop_reason == "unset":
            stop_reason = self.STOP.get(self.finish_reason or "stop", "end_turn")
        usage = self.usage or {}
        return {"id": self.id, "type": "message", "role": "assistant", "model": self.model,
                "content": blocks, "stop_reason": stop_reason, "stop_sequence": None,
                "usage": {"input_tokens": int(usage.get("prompt_tokens") or 0),
                          "output_tokens": int(usage.get("completion_tokens") or 0)}}  # fmt: skip

    def _final_blocks(self) -> list[Json]:
        by_block = {b: i for i, b in self.call_block.items()}
        out = []
        for n, block in enumerate(self.blocks or [{"type": "text", "text": ""}]):
            if block["type"] == "tool_use":
                raw = self.calls[by_block[n]]["arguments"] or "{}"
                try:
                    block = block | {"input": orjson.loads(raw)}
                except orjson.JSONDecodeError:
                    block = block | {"input": {"raw": raw}}
            out.append(block)
        return out


def whole(writer: ResponsesWriter | AnthropicWriter, completion: Json, payload: Json) -> list[Json]:
    """Feed a whole chat completion through `writer`: the events its stream would carry (the
    writer's final object is then ready)."""
    events = writer.start()
    for chunk in completion_chunks(completion, payload | {"_usage": True}):
        events += writer.feed(chunk)
    return events + writer.finish()


async def translated(
    chunks: AsyncIterator[bytes], writer: ResponsesWriter | AnthropicWriter
) -> AsyncIterator[bytes]:
    """A chat stream as the events of `writer`'s surface, translated as it arrives."""
    parser = ChatChunks()
    yield sse(writer.start(), named=True)
    async for data in chunks:
        events = [event for chunk in parser.feed(data) for event in writer.feed(chunk)]
        if events:
            yield sse(events, named=True)
    yield sse(writer.finish(), named=True)
