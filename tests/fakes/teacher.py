"""A fake OpenAI-compatible teacher: a real HTTP/1.1 server on loopback, in its own thread.

It is the only fake in the tests (the teacher provider is outside the project). It writes its
SSE streams in pieces split at arbitrary byte boundaries, can be slow between chunks, and can
be told to fail the next requests with 429/500 or to drop the connection. Every request it
receives is recorded for assertions.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import socket
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import orjson

from demo.loopback import LoopbackServer


def reader_closed(w: asyncio.StreamWriter) -> bool:
    transport = w.transport
    return bool(getattr(transport, "_conn_lost", 0))


@dataclass
class Failure:
    """What to do instead of answering one request."""

    status: int = 500
    body: bytes | None = None  # default: an OpenAI-shaped error
    retry_after: float | None = None
    drop_connection: bool = False


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class FakeTeacher(LoopbackServer):
    """Answers chat completions by rule: `echo: <last user text>`, tool calls when tools are
    offered (and the text mentions "weather"), JSON when response_format asks for it."""

    latency_s: float = 0.0
    chunk_delay_s: float = 0.0
    split_seed: int | None = 7  # None: one write per SSE event
    model: str = "fake-teacher-1"
    failures: deque[Failure] = field(default_factory=deque)
    received: list[Received] = field(default_factory=list)
    answer: Any = None  # optional callable(request_body) -> str content
    mutate: Any = None  # optional callable(completion dict) -> dict: odd answers on purpose
    streams_aborted: int = 0  # streams the other side closed before the end

    thread_name = "fake teacher"

    def __post_init__(self) -> None:
        self._init_server()
        self._rng = random.Random(self.split_seed)

    def fail_next(self, *failures: Failure) -> None:
        self.failures.extend(failures)

    # -- HTTP ------------------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        k, v = line.split(":", 1)
                        headers[k.strip().lower()] = v.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                if not await self._respond(method, path, headers, body, writer):
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    async def _respond(
        self, method: str, path: str, headers: dict[str, str], raw: bytes, w: asyncio.StreamWriter
    ) -> bool:
        payload = json.loads(raw) if raw else {}
        self.received.append(Received(path, headers, payload))
        if path.endswith("/models"):
            await self._send(w, 200, orjson.dumps({"object": "list", "data": []}))
            return True
        if self.failures:
            failure = self.failures.popleft()
            if failure.drop_connection:
                return False
            extra = {"retry-after": str(failure.retry_after)} if failure.retry_after else {}
            body = failure.body or orjson.dumps(
                {
                    "error": {
                        "message": f"fake failure {failure.status}",
                        "type": "server_error",
                        "param": None,
                        "code": None,
                    }
                }
            )
            await self._send(w, failure.status, body, extra)
            return True
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        if payload.get("stream"):
            await self._stream(w, payload)
        else:
            await self._send(w, 200, orjson.dumps(self.completion(payload)))
        return True

    async def _send(
        self, w: asyncio.StreamWriter, status: int, body: bytes, extra: dict[str, str] | None = None
    ) -> None:
        head = f"HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n"
        head += f"content-length: {len(body)}\r\nx-request-id: fake-{len(self.received)}\r\n"
        for k, v in (extra or {}).items():
            head += f"{k}: {v}\r\n"
        w.write(head.encode() + b"\r\n" + body)  # one write: no Nagle stall
        await w.drain()

    async def _stream(self, w: asyncio.StreamWriter, payload: dict[str, Any]) -> None:
        head = (
            "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            "transfer-encoding: chunked\r\n\r\n"
        )
        w.write(head.encode())
        events = b"".join(
            b"data: " + orjson.dumps(chunk) + b"\n\n" for chunk in self.chunks(payload)
        )
        events += b"data: [DONE]\n\n"
        try:
            for piece in self._split(events):
                w.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                await w.drain()
                if self.chunk_delay_s:
                    await asyncio.sleep(self.chunk_delay_s)
                if w.is_closing() or reader_closed(w):
                    raise ConnectionResetError
            w.write(b"0\r\n\r\n")
            await w.drain()
        except ConnectionError:
            self.streams_aborted += 1
            raise

    def _split(self, data: bytes) -> list[bytes]:
        if self.split_seed is None:
            return [e + b"\n\n" for e in data.split(b"\n\n") if e]
        pieces, i = [], 0
        while i < len(data):
            step = self._rng.randint(1, 40)
            pieces.append(data[i : i + step])
            i += step
        return pieces

    # -- answers ---------------------------------------------------------------------------

    def content_for(self, payload: dict[str, Any]) -> str:
        if self.answer is not None:
            return str(self.answer(payload))
        last = payload["messages"][-1]["content"]
        if isinstance(last, list):
            last = " ".join(p["text"] for p in last if isinstance(p, dict) and p.get("text"))
        fmt = payload.get("response_format") or {}
        if fmt.get("type") in ("json_object", "json_schema"):
            return json.dumps({"echo": last})
        return f"echo: {last}"

    def tool_call(self, payload: dict[str, Any]) -> dict[str, Any] | None:
        tools = payload.get("tools") or []
        if not tools or "weather" not in json.dumps(payload["messages"][-1]):
            return None
        name = tools[0]["function"]["name"]
        return {
            "id": "call_1",
            "type": "function",
            "function": {"name": name, "arguments": json.dumps({"city": "Paris"})},
        }

    def completion(self, payload: dict[str, Any]) -> dict[str, Any]:
        n = int(payload.get("n") or 1)
        content = self.content_for(payload)
        call = self.tool_call(payload)
        choices = []
        for i in range(n):
            message: dict[str, Any] = {"role": "assistant", "content": None if call else content}
            if call:
                message["tool_calls"] = [call]
            choice: dict[str, Any] = {
                "index": i,
                "message": message,
                "finish_reason": "tool_calls" if call else "stop",
            }
            if payload.get("logprobs"):
                choice["logprobs"] = {"content": self.logprobs(content, payload)}
            choices.append(choice)
        words = content.split()
        completion = {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.model,
            "choices": choices,
            "usage": {
                "prompt_tokens": 11,
                "completion_tokens": len(words) * n,
                "total_tokens": 11 + len(words) * n,
            },
        }
        return self.mutate(completion) if self.mutate is not None else completion

    def logprobs(self, content: str, payload: dict[str, Any]) -> list[dict[str, Any]]:
        k = int(payload.get("top_logprobs") or 0)
        out = []
        for word in content.split(" "):
            top = [{"token": word, "logprob": -0.01, "bytes": None}]
            top += [{"token": f"alt{j}", "logprob": -5.0 - j, "bytes": None} for j in range(k - 1)]
            out.append({"token": word, "logprob": -0.01, "bytes": None, "top_logprobs": top[:k]})
        return out

    def chunks(self, payload: dict[str, Any]) -> list[dict[str, Any]]:
        full = self.completion(payload)
        base = {k: full[k] for k in ("id", "created", "model")} | {
            "object": "chat.completion.chunk"
        }
        out = []
        for choice in full["choices"]:
            i, message = choice["index"], choice["message"]
            out.append(
                base
                | {"choices": [{"index": i, "delta": {"role": "assistant"}, "finish_reason": None}]}
            )
            if message.get("tool_calls"):
                call = message["tool_calls"][0]
                args = call["function"]["arguments"]
                first = {
                    "index": 0,
                    "id": call["id"],
                    "type": "function",
                    "function": {"name": call["function"]["name"], "arguments": ""},
                }
                out.append(base | {"choices": [{"index": i, "delta": {"tool_calls": [first]}}]})
                for part in (args[: len(args) // 2], args[len(args) // 2 :]):
                    delta = {"tool_calls": [{"index": 0, "function": {"arguments": part}}]}
                    out.append(base | {"choices": [{"index": i, "delta": delta}]})
            else:
                words = message["content"].split(" ")
                for j, word in enumerate(words):
                    piece = word if j == 0 else " " + word
                    c: dict[str, Any] = {
                        "index": i,
                        "delta": {"content": piece},
                        "finish_reason": None,
                    }
                    if choice.get("logprobs"):
                        c["logprobs"] = {"content": [choice["logprobs"]["content"][j]]}
                    out.append(base | {"choices": [c]})
            out.append(
                base
                | {"choices": [{"index": i, "delta": {}, "finish_reason": choice["finish_reason"]}]}
            )
        if (payload.get("stream_options") or {}).get("include_usage"):
            out.append(base | {"choices": [], "usage": full["usage"]})
        return out


if __name__ == "__main__":  # `python -m tests.fakes.teacher --port P`: the benchmarks' teacher
    parser = argparse.ArgumentParser(description="the fake OpenAI-compatible teacher")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--latency-s", type=float, default=0.0)
    args = parser.parse_args()
    FakeTeacher(split_seed=None, latency_s=args.latency_s).serve_forever(args.port)
