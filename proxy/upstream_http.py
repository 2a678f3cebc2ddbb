"""A lean keep-alive HTTP/1.1 client for the teachers: asyncio protocols and httptools' parser.

Why not aiohttp's client: on the pass-through path it cost about 190 us of CPU a call against
the fake teacher on loopback, against about 50 us for a keep-alive client this size (its
request and response objects, yarl URLs, timer contexts and tasks per call). This client does
what the teacher path needs and no more: a pool of idle connections per (scheme, host, port),
the request's head and body in one write, bodies by content-length, chunked or until close,
answers streamed as they arrive (reading pauses while a reader falls behind), TLS through an
`ssl` context, and timeouts for connecting, between bytes and in all, with one timer a wait.
It honours no proxy from the environment (aiohttp's session did not either: trust_env off).

Errors say what happened so the teacher can decide: `ConnectFailed` (nothing was sent),
`Disconnected` (the connection closed before the answer's head; `answered` says whether any
byte came back), `BadHttp` (the answer is not HTTP this client accepts), `ReadTimeout`, and
`BodyBroken` (the connection went away inside the body).
"""

from __future__ import annotations

import asyncio
import socket
from collections import deque
from collections.abc import AsyncIterator
from functools import lru_cache
from typing import NamedTuple, Protocol, cast
from urllib.parse import quote, urlsplit

import httptools

MAX_HEADERS = 128  # as aiohttp: a flood of headers is not an answer
MAX_FIELD = 8190
READ_HIGH_WATER = 256 * 1024  # buffered answer bytes at which reading pauses
_SAFE = "/%:@!$&'()*+,;=-._~?"  # what a request target keeps as it is (the rest is quoted)


class HttpError(Exception):
    """Anything that went wrong between this client and the server."""


class ConnectFailed(HttpError):
    """No connection (refused, unresolvable, TLS refused, connect timeout): nothing was sent."""


class Disconnected(HttpError):
    """The connection closed before the answer's head was complete."""

    def __init__(self, message: str, answered: bool) -> None:
        super().__init__(message)
        self.answered = answered  # some byte of an answer came back


class BadHttp(HttpError):
    """The server's answer is not HTTP/1.1 this client accepts."""


class ReadTimeout(HttpError, TimeoutError):
    """No byte within the read timeout, or the answer passed its total time."""


class BodyBroken(HttpError):
    """The answer's body broke off (the connection closed inside it)."""


class Pool(Protocol):
    """Where a connection goes back when its answer is done, and leaves when it closes."""

    def park(self, conn: Connection) -> None: ...
    def forget(self, conn: Connection) -> None: ...


class Target(NamedTuple):
    key: tuple[str, str, int]  # scheme, host, port: the pool a connection belongs to
    host_header: str
    path: str  # the request target: path and query, quoted


@lru_cache(maxsize=4096)
def target(url: str) -> Target:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url!r}")
    default = 443 if parts.scheme == "https" else 80
    port = parts.port or default
    host = parts.hostname
    shown = f"[{host}]" if ":" in host else host
    host_header = shown if port == default else f"{shown}:{port}"
    path = quote(parts.path or "/", safe=_SAFE)
    if parts.query:
        path += "?" + quote(parts.query, safe=_SAFE)
    return Target((parts.scheme, host, port), host_header, path)


def request_head(method: str, tgt: Target, headers: dict[str, str], framing: str) -> bytes:
    """The request line and headers; `framing` is the body's (content-length, chunked, none)."""
    lines = [f"{method} {tgt.path} HTTP/1.1\r\nhost: {tgt.host_header}\r\n"]
    for name, value in headers.items():
        if "\n" in value or "\r" in value or "\n" in name or "\r" in name:
            raise ValueError(f"header {name!r} has a line break")  # never a smuggled header
        lines.append(f"{name}: {value}\r\n")
    if "accept" not in headers:
        lines.append("accept: */*\r\n")
    lines.append(framing)
    lines.append("\r\n")
    return "".join(lines).encode("latin-1")


class Response:
    """An answer: status and headers at once, its body as it arrives."""

    def __init__(self, conn: Connection, deadline: float | None, read_timeout: float) -> None:
        self._conn = conn
        self._loop = conn.loop
        self.status = 0
        self.headers: dict[str, str] = {}
        self._raw: list[tuple[bytes, bytes]] = []
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self.head_done = False
        self.complete = False
        self._exc: HttpError | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._deadline = deadline
        self._read_timeout = read_timeout
        self.last_read = self._loop.time()
        self.answered = False
        self.head_only = False  # the answer to HEAD: no body whatever its headers say
        self._framed = False  # content-length or chunked: the close is not the body's end

    @property
    def content_length(self) -> int | None:
        value = self.headers.get("content-length")
        return int(value) if value is not None and value.isdigit() else None

    def at_eof(self) -> bool:
        return self.complete and not self._chunks

    async def read_any(self) -> bytes:
        """All the body's bytes that have come and were not read yet (waiting for some when
        none have); b"" at its end. (One piece per packet would cost a relay one write to
        its client per packet.)"""
        while not self._chunks:
            if self.complete:
                return b""
            await self._wait()
        chunks = self._chunks
        data = chunks.popleft() if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        if self._buffered >= READ_HIGH_WATER:
            self._conn.resume()
        self._buffered = 0
        return data

    async def iter_any(self) -> AsyncIterator[bytes]:
        while data := await self.read_any():
            yield data

    def release(self) -> None:
        """Done with it: a finished answer's connection goes back to the pool, any other closes."""
        if self.complete and self._exc is None:
            self._conn.recycle()
        else:
            self._conn.abort()

    def close(self) -> None:
        self._conn.abort()

    # -- fed by the connection -------------------------------------------------------------

    async def wait_head(self) -> None:
        while not self.head_done:
            await self._wait()

    async def _wait(self) -> None:
        if self._exc is not None:
            raise self._exc
        waiter = self._waiter = self._loop.create_future()
        timer = self._loop.call_at(self._due(), self._check_time)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None

    def _due(self) -> float:
        due = self.last_read + self._read_timeout
        return due if self._deadline is None else min(due, self._deadline)

    def _check_time(self) -> None:
        # One timer a wait, moved on when bytes came since it was set (no rescheduling per
        # packet).
        if self._waiter is None or self._waiter.done():
            return
        if self._loop.time() < self._due() - 0.001:
            self._loop.call_at(self._due(), self._check_time)
            return
        self.fail(ReadTimeout("no answer in time"))

    def wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def fail(self, exc: HttpError) -> None:
        if self._exc is None:
            self._exc = exc
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(exc)
        self._conn.abort()

    def fed(self, data: bytes) -> None:
        self._chunks.append(data)
        self._buffered += len(data)
        if self._buffered >= READ_HIGH_WATER:
            self._conn.pause()
        self.wake()

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(self._raw) >= MAX_HEADERS:
            raise BadHttp(f"more than {MAX_HEADERS} headers")
        if len(name) > MAX_FIELD or len(value) > MAX_FIELD:
            raise BadHttp(f"a header longer than {MAX_FIELD} bytes")
        self._raw.append((name, value))

    def on_headers_complete(self, status: int) -> None:
        if 100 <= status < 200:  # an interim answer (100 Continue): the real one follows
            self._raw = []
            return
        headers: dict[str, str] = {}
        for raw_name, raw_value in self._raw:
            name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        self.status, self.headers, self.head_done = status, headers, True
        self._framed = "content-length" in headers or "transfer-encoding" in headers
        self._framed = self._framed or status in (204, 304)
        if self.head_only:  # the parser still expects the body its headers announce:
            self.complete = True  # the connection is not reused
            self._conn.abort_later()
        self.wake()


class Connection(asyncio.Protocol):
    """One connection to a server; at most one answer at a time."""

    def __init__(self, client: Pool, key: tuple[str, str, int]) -> None:
        self.client, self.key = client, key
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.response: Response | None = None
        self.closed = False
        self.reused = False
        self.idle_since = 0.0
        self._keep = True  # False: closed once its answer is done, never reused
        self._paused = False
        self._write_ready: asyncio.Future[None] | None = None

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # (uvloop's is not a subclass)
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        r = self.response
        if r is None or r.complete:  # bytes nobody asked for: this connection is not reusable
            self.abort()
            return
        r.answered, r.last_read = True, self.loop.time()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            r.fail(BadHttp("the server switched protocols"))
        except httptools.HttpParserError as exc:
            cause = exc.__cause__ or exc.__context__
            r.fail(cause if isinstance(cause, BadHttp) else BadHttp(str(exc) or "unparsable"))

    def eof_received(self) -> bool:
        return False  # close: a half-closed connection is not reused

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.client.forget(self)
        self._wake_writer(exc or ConnectionResetError("connection closed"))
        r = self.response
        if r is None or r.complete:
            return
        if not r.head_done:
            r.fail(Disconnected("the server closed the connection before answering", r.answered))
        elif exc is None and not r._framed:  # a body delimited by the connection's end
            r.complete = True
            r.wake()
        else:
            r.fail(BodyBroken("the connection closed inside the answer's body"))

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self._wake_writer(None)

    # -- httptools callbacks ---------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        assert self.response is not None
        self.response.on_header(name, value)

    def on_headers_complete(self) -> None:
        assert self.response is not None
        self.response.on_headers_complete(self.parser.get_status_code())

    def on_body(self, body: bytes) -> None:
        assert self.response is not None
        if not self.response.head_only:
            self.response.fed(body)

    def on_message_complete(self) -> None:
        r = self.response
        assert r is not None
        if r.head_done:  # (an interim 1xx answer completes too; the real one follows)
            r.complete = True
            if not self.parser.should_keep_alive():
                self.abort_later()
            r.wake()

    # -- used by the client and the response -----------------------------------------------

    async def drain(self) -> None:
        if self.closed:
            raise ConnectionResetError("connection closed")
        if self._paused:
            self._write_ready = self.loop.create_future()
            await self._write_ready

    def _wake_writer(self, exc: Exception | None) -> None:
        w = self._write_ready
        if w is not None and not w.done():
            w.set_result(None) if exc is None else w.set_exception(exc)

    def pause(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.pause_reading()

    def resume(self) -> None:
        if self.transport is not None and not self.closed and self.transport.is_reading() is False:
            self.transport.resume_reading()

    def abort_later(self) -> None:
        self._keep = False

    def recycle(self) -> None:
        if self.closed or not self._keep or self.response is None:
            self.abort()
            return
        self.response = None
        self.client.park(self)

    def abort(self) -> None:
        if not self.closed:
            self.closed = True
            self.client.forget(self)
            if self.transport is not None:
                self.transport.close()
