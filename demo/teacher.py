"""The simulated teacher: the demo's offline stand-in for a real, paid LLM provider.

It is a real OpenAI-compatible HTTP/1.1 server on loopback, run in its own thread, so the proxy
talks to it exactly as it would to api.openai.com: `POST /v1/chat/completions` (plain and SSE
streaming, `stream_options.include_usage`, `logprobs`/`top_logprobs`) and `GET /v1/models`.
It answers by rule (`task.teacher_answer` on the last user message), takes a configurable
simulated time to answer, and declares a price so the demo can show the teacher cost avoided.
It serves only the model names in `models`, with OpenAI's 404 for any other, as a provider does.
"""

from __future__ import annotations

import asyncio
import math
import re
import socket
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson

from demo import task
from demo.loopback import LoopbackServer

_STATUS_TEXT = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}
# Words and single punctuation marks, each with the spaces before it: joined back they give
# the text exactly, which is what a client reassembling a stream relies on.
_TOKEN = re.compile(r"\s*\w+|\s*[^\w\s]|\s+$")
# Stand-ins for the runner-up tokens when a client asks for top_logprobs.
_ALTERNATIVES = ('"', ",", ":", "{", "}", "_", " ", "high", "normal", "low")


class RequestError(Exception):
    """A request the teacher refuses, with the OpenAI-shaped error it answers."""

    def __init__(self, status: int, message: str, *, param: str | None, code: str) -> None:
        super().__init__(message)
        self.status, self.param, self.code = status, param, code

    def body(self) -> bytes:
        kind = "invalid_request_error"
        err = {"message": str(self), "type": kind, "param": self.param, "code": self.code}
        return orjson.dumps({"error": err})


def tokenize(text: str) -> list[str]:
    """The teacher's pretend tokens: what usage counts and what each stream chunk carries."""
    return _TOKEN.findall(text)


@dataclass
class SimulatedTeacher(LoopbackServer):
    """An offline, rule-answering OpenAI-compatible provider for the demo and its tests.

    Use it as a context manager; `base_url` ends in /v1. Prices are USD per million tokens,
    the figures to put in the demo route's `input_cost_per_mtok`/`output_cost_per_mtok`.
    """

    latency_s: float = 0.3  # non-streaming: time before the whole answer
    ttft_s: float = 0.2  # streaming: time to the first token
    per_token_s: float = 0.01  # streaming: time between tokens
    models: tuple[str, ...] = ("sim-teacher-1",)
    input_usd_per_mtok: float = 2.50  # priced like a large hosted model
    output_usd_per_mtok: float = 10.00
    host: str = "127.0.0.1"
    requests_served: int = field(default=0, init=False)  # completions accepted (200)

    thread_name = "simulated teacher"

    def __post_init__(self) -> None:
        self._init_server()

    # -- HTTP/1.1 -------------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:  # small writes must leave at once, not wait for Nagle
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                method, path, headers = _parse_head(head)
                body = await _read_body(reader, headers)
                await self._respond(method, path.split("?", 1)[0], body, writer)
                if headers.get("connection", "").lower() == "close":
                    break
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass  # the client went away; nothing to answer
        finally:
            writer.close()

    async def _respond(self, method: str, path: str, raw: bytes, w: asyncio.StreamWriter) -> None:
        try:
            if path.rstrip("/") == "/v1/models" and method == "GET":
                data = [{"id": m, "object": "model", "created": 0, "owned_by": "apprentice-demo"}
                        for m in self.models]  # fmt: skip
                await _send(w, 200, orjson.dumps({"object": "list", "data": data}))
            elif path.rstrip("/") == "/v1/chat/completions" and method == "POST":
                await self._complete(_parse_json(raw), w)
            else:
                raise RequestError(
                    404, f"No route {method} {path} on the simulated teacher.", param=None,
                    code="unknown_url",
                )  # fmt: skip
        except RequestError as err:
            await _send(w, err.status, err.body())

    async def _complete(self, payload: dict[str, Any], w: asyncio.StreamWriter) -> None:
        answer, prompt_tokens = self._answer(payload)
        tokens = tokenize(answer)
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": len(tokens),
            "total_tokens": prompt_tokens + len(tokens),
        }
        top = _top_logprobs(payload)
        self.requests_served += 1  # counted before the answer leaves, so a client sees it
        ident = f"chatcmpl-sim{uuid.uuid4().hex[:20]}"
        model = str(payload["model"])
        if payload.get("stream"):
            include_usage = bool((payload.get("stream_options") or {}).get("include_usage"))
            await self._stream(w, ident, model, tokens, top, usage if include_usage else None)
        else:
            await asyncio.sleep(self.latency_s)
            choice = {
                "index": 0,
                "message": {"role": "assistant", "content": answer, "refusal": None},
                "logprobs": None if top is None else {"content": _logprobs(tokens, top)},
                "finish_reason": "stop",
            }
            body = _envelope(ident, model, "chat.completion") | {
                "choices": [choice],
                "usage": usage,
            }
            await _send(w, 200, orjson.dumps(body))

    def _answer(self, payload: dict[str, Any]) -> tuple[str, int]:
        model = payload.get("model")
        if model not in self.models:
            raise RequestError(
                404,
                f"The model {model!r} does not exist; this simulated teacher serves "
                f"{', '.join(self.models)}.",
                param="model",
                code="model_not_found",
            )
        messages = payload.get("messages")
        if not isinstance(messages, list) or not messages:
            raise RequestError(
                400,
                "'messages' must be a non-empty list of chat messages.",
                param="messages",
                code="invalid_value",
            )
        prompt_tokens = sum(len(tokenize(_text(m))) + 4 for m in messages)
        users = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
        return task.teacher_answer(_text(users[-1]) if users else ""), prompt_tokens

    async def _stream(
        self,
        w: asyncio.StreamWriter,
        ident: str,
        model: str,
        tokens: list[str],
        top: int | None,
        usage: dict[str, int] | None,
    ) -> None:
        head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
        head += "cache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n"
        w.write(head.encode())
        base = _envelope(ident, model, "chat.completion.chunk")
        first = {"role": "assistant", "content": ""}
        await _event(w, base | {"choices": [_delta(first, None, None)]}, usage is not None)
        await asyncio.sleep(self.ttft_s)
        for i, token in enumerate(tokens):
            if i:
                await asyncio.sleep(self.per_token_s)
            lp = None if top is None else {"content": _logprobs([token], top)}
            chunk = base | {"choices": [_delta({"content": token}, lp, None)]}
            await _event(w, chunk, usage is not None)
        await _event(w, base | {"choices": [_delta({}, None, "stop")]}, usage is not None)
        if usage is not None:
            await _event(w, base | {"choices": [], "usage": usage}, False)
        w.write(_chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n")
        await w.drain()


# -- wire helpers (module-private: the server above is their only user) --------------------


def _parse_head(head: bytes) -> tuple[str, str, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3:
        raise ConnectionResetError("not an HTTP/1.1 request line")
    headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return parts[0], parts[1], headers


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
    if headers.get("transfer-encoding", "").lower() != "chunked":
        return await reader.readexactly(int(headers.get("content-length") or 0))
    body = b""
    while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
        body += await reader.readexactly(size)
        await reader.readexactly(2)
    await reader.readuntil(b"\r\n")  # no trailers are sent by the clients we serve
    return body


def _parse_json(raw: bytes) -> dict[str, Any]:
    try:
        payload = orjson.loads(raw or b"{}")
    except orjson.JSONDecodeError as exc:
        raise RequestError(400, "The body is not valid JSON.", param=None, code="bad_json") from exc
    if not isinstance(payload, dict):
        raise RequestError(400, "The body must be a JSON object.", param=None, code="bad_json")
    return payload


def _text(message: Any) -> str:
    content = message.get("content") if isinstance(message, dict) else None
    if isinstance(content, list):  # content parts: keep the text ones
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return content if isinstance(content, str) else ""


def _top_logprobs(payload: dict[str, Any]) -> int | None:
    if not payload.get("logprobs"):
        return None
    return max(0, min(20, int(payload.get("top_logprobs") or 0)))


def _logprobs(tokens: list[str], top: int) -> list[dict[str, Any]]:
    """Fake but well-formed: the answer's token is near-certain, runners-up share the rest."""
    out = []
    for token in tokens:
        chosen = {"token": token, "logprob": -0.0001, "bytes": list(token.encode())}
        rivals = [a for a in _ALTERNATIVES if a != token][: max(0, top - 1)]
        alts = [
            {"token": a, "logprob": math.log(1e-4) - i, "bytes": list(a.encode())}
            for i, a in enumerate(rivals)
        ]
        out.append(chosen | {"top_logprobs": [chosen, *alts][:top]})
    return out


def _envelope(ident: str, model: str, kind: str) -> dict[str, Any]:
    return {"id": ident, "object": kind, "created": int(time.time()), "model": model,
            "system_fingerprint": "fp_simulated"}  # fmt: skip


def _delta(delta: dict[str, Any], lp: dict[str, Any] | None, finish: str | None) -> dict[str, Any]:
    return {"index": 0, "delta": delta, "logprobs": lp, "finish_reason": finish}


def _chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


async def _event(w: asyncio.StreamWriter, chunk: dict[str, Any], with_usage: bool) -> None:
    if with_usage:  # OpenAI sends usage: null on every chunk but the last when asked for it
        chunk = chunk | {"usage": None}
    w.write(_chunk(b"data: " + orjson.dumps(chunk) + b"\n\n"))
    await w.drain()


async def _send(w: asyncio.StreamWriter, status: int, body: bytes) -> None:
    head = f"HTTP/1.1 {status} {_STATUS_TEXT.get(status, 'Error')}\r\n"
    head += f"content-type: application/json\r\ncontent-length: {len(body)}\r\n"
    head += f"x-request-id: req_sim{uuid.uuid4().hex[:16]}\r\n\r\n"
    w.write(head.encode() + body)  # one write: headers and body leave together
    await w.drain()
