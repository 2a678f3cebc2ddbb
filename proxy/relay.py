"""Relaying a teacher's SSE stream to the client as it arrives, and noticing when they leave.

The relay runs as one task and a watcher waits for the client's disconnect as another; the
first to finish decides. A client that leaves cancels the relay, which closes the upstream
response (so the teacher stops generating), and the part already received is still logged,
marked truncated.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import orjson
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from proxy.errors import anthropic_error_body, error_body
from proxy.exchange import Exchange
from proxy.streams import MESSAGES_DONE
from proxy.teacher import Upstream, UpstreamTooLarge
from proxy.upstream_http import HttpError

DONE = b"data: [DONE]"


class RelayResponse(Response):
    def __init__(
        self,
        upstream: Upstream,
        headers: dict[str, str],
        exchange: Exchange,
        on_finish: Callable[[], None],
        t0: float,
        done: tuple[bytes, ...] = (DONE,),
    ) -> None:
        self.upstream = upstream
        self.exchange = exchange
        self.on_finish = on_finish
        self.status_code = 200
        self.background = None
        self.init_headers(headers | {"cache-control": "no-cache"})
        self._t0 = t0
        self._rewriter = EventRewriter() if exchange.proxy_added_logprobs else None
        self._finished = False
        self._done = done  # what the event that ends the answer starts with, per surface
        self._longest = max(len(d) for d in done)
        self._tail = b""  # the end of the last chunk: a marker may be split across two
        self._ending = False  # the last event has begun

    def _finish(self) -> None:
        if not self._finished:
            self._finished = True
            self.on_finish()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        relay = asyncio.create_task(self._relay(send))
        watcher = asyncio.create_task(_client_gone(receive))
        try:
            done, _ = await asyncio.wait({relay, watcher}, return_when=asyncio.FIRST_COMPLETED)
            if relay not in done:
                self.exchange.outcome = "client_disconnected"
                relay.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await relay
        except asyncio.CancelledError:  # the server is going away: still log what we have
            self.exchange.outcome = "client_disconnected"
            relay.cancel()
            raise
        finally:
            watcher.cancel()
            with contextlib.suppress(Exception):
                await self.upstream.close()
            self.exchange.status = 200
            self._finish()

    async def _relay(self, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        assert self.upstream.chunks is not None
        try:
            async for chunk in self.upstream.chunks:
                if self.exchange.ttft_s is None:
                    self.exchange.ttft_s = time.perf_counter() - self._t0
                self.exchange.chunks.append(chunk)
                seen = self._tail + chunk
                self._tail = seen[-self._longest :]
                self._ending = self._ending or any(d in seen for d in self._done)
                if self._ending and seen.endswith(b"\n\n"):  # the answer's last bytes:
                    self.exchange.status = 200  # its row is journaled before they go out
                    self._finish()
                out = self._rewriter.feed(chunk) if self._rewriter else chunk
                if out:
                    await send({"type": "http.response.body", "body": out, "more_body": True})
        except (HttpError, aiohttp.ClientError, TimeoutError) as exc:
            # The teacher failed mid-stream: tell the client in the stream, as OpenAI does.
            message = (
                f"The teacher's answer grew past max_response_bytes ({exc}); the stream was cut."
                if isinstance(exc, UpstreamTooLarge)
                else f"The teacher's stream broke off: {type(exc).__name__}."
            )
            self.exchange.outcome = "upstream_error"
            self.exchange.error = message
            await send({"type": "http.response.body", "body": self._error_event(message),
                        "more_body": True})  # fmt: skip
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    def _error_event(self, message: str) -> bytes:
        """The stream's error event in the client's shape: Anthropic's `event: error` (the
        only event anthropic-python raises on mid-stream), or OpenAI's `data: {"error"}`."""
        if self._done == MESSAGES_DONE:
            return b"event: error\ndata: " + anthropic_error_body(502, message) + b"\n\n"
        return b"data: " + error_body(message, "upstream_error", "teacher_stream_error") + b"\n\n"


async def _client_gone(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


class EventRewriter:
    """Removes the logprobs the proxy asked for (and the client did not) from SSE events."""

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, chunk: bytes) -> bytes:
        self._buffer += chunk
        out = []
        while b"\n\n" in self._buffer:
            event, self._buffer = self._buffer.split(b"\n\n", 1)
            if event.startswith(b"data: {"):
                event = b"data: " + strip_logprobs(event[6:])
            out.append(event + b"\n\n")
        return b"".join(out)


def strip_logprobs(body: bytes) -> bytes:
    """A response or chunk without its choices' logprobs."""
    try:
        data: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body
    if not isinstance(data, dict):
        return body
    for choice in data.get("choices") or []:
        if isinstance(choice, dict):
            choice.pop("logprobs", None)
    return orjson.dumps(data)
