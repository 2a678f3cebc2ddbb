"""The bytes on the wire for every surface of the fake teacher, in one place.

HTTP/1.1 requests read off a keep-alive connection (a Content-Length or a chunked body), JSON
answers written in one piece, and SSE bodies written as a chunked stream cut at arbitrary byte
boundaries, so that every client's SSE parser is tested against the worst a network can do.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import orjson

DONE = b"data: [DONE]\n\n"  # the sentinel OpenAI's chat and legacy completion streams end with


@dataclass
class Request:
    method: str
    target: str  # as sent, query included
    headers: dict[str, str]  # names lower-cased
    raw: bytes

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]

    @property
    def keep_alive(self) -> bool:
        return self.headers.get("connection", "").lower() != "close"


@dataclass
class Reply:
    """One answer: a JSON body, or an SSE body (always 200) when `stream` is set."""

    status: int = 200
    body: Any = None
    stream: bytes | None = None


async def read_request(reader: asyncio.StreamReader) -> Request:
    """The next request on the connection; IncompleteReadError once the peer has gone."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, target, _ = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        raw = await _read_chunked(reader)
    else:
        raw = await reader.readexactly(int(headers.get("content-length", "0")))
    return Request(method, target, headers, raw)


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    body = bytearray()
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0], 16)
        if size == 0:
            while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers, if any
                pass
            return bytes(body)
        body += await reader.readexactly(size)
        await reader.readexactly(2)


def parse_json(raw: bytes) -> tuple[dict[str, Any], bool]:
    """The body as a JSON object, and whether it was one (an empty body counts as `{}`)."""
    if not raw.strip():
        return {}, True
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {}, False
    return (value, True) if isinstance(value, dict) else ({}, False)


def sse(data: Any, event: str | None = None) -> bytes:
    """One SSE event; OpenAI's typed streams and Anthropic's name the event on its own line."""
    head = f"event: {event}\n".encode() if event else b""
    return head + b"data: " + orjson.dumps(data) + b"\n\n"


def typed_sse(events: list[dict[str, Any]]) -> bytes:
    """A stream whose events carry their `type` both in the data and on the `event:` line."""
    return b"".join(sse(e, str(e["type"])) for e in events)


def status_line(status: int) -> str:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:  # 529, Anthropic's "overloaded", is no standard status
        phrase = "Unknown"
    return f"HTTP/1.1 {status} {phrase}\r\n"


def head_bytes(status: int, headers: dict[str, str]) -> bytes:
    lines = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return (status_line(status) + lines + "\r\n").encode("latin-1")


def split(data: bytes, rng: random.Random | None) -> list[bytes]:
    """The pieces to write: whole events without a generator, else cuts of 1 to 40 bytes
    anywhere, mid-line and mid-UTF-8 sequence included."""
    if rng is None:
        return [e + b"\n\n" for e in data.split(b"\n\n") if e]
    pieces, i = [], 0
    while i < len(data):
        step = rng.randint(1, 40)
        pieces.append(data[i : i + step])
        i += step
    return pieces


def reader_closed(w: asyncio.StreamWriter) -> bool:
    transport = w.transport
    return bool(getattr(transport, "_conn_lost", 0))


async def write_stream(
    w: asyncio.StreamWriter,
    pieces: list[bytes],
    headers: dict[str, str],
    delay_s: float,
    end: bool = True,
) -> None:
    """A 200 SSE answer as chunked transfer encoding, one chunk per piece; ConnectionResetError
    as soon as the peer is seen gone, so that the caller can count the aborted stream.
    `end=False` leaves out the last chunk: the stream is cut, as by a teacher that died."""
    head = {"content-type": "text/event-stream", "transfer-encoding": "chunked"} | headers
    w.write(head_bytes(200, head))
    for piece in pieces:
        w.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
        await w.drain()
        if delay_s:
            await asyncio.sleep(delay_s)
        if w.is_closing() or reader_closed(w):
            raise ConnectionResetError
    if end:
        w.write(b"0\r\n\r\n")
    await w.drain()


async def write_json(
    w: asyncio.StreamWriter, status: int, body: bytes, headers: dict[str, str]
) -> None:
    head = {"content-type": "application/json", "content-length": str(len(body))} | headers
    w.write(head_bytes(status, head) + body)  # one write: no Nagle stall
    await w.drain()
