"""Client connections: bounded header time, one write per whole answer, and a disconnect signal.

uvicorn closes a keep-alive connection that stays idle between requests, but nothing bounds
the time a client takes to send a request's headers: a slowloris client that opens sockets and
trickles a header byte every few seconds holds each one forever. This protocol gives every
request `header_timeout_s` from its first byte (or from the connection's start) to its last
header, and closes the connection when it is slower. The body has its own limit, applied where
the handler reads it (`server.body_timeout_s`, a 408).

Two things the hot path measured (bench/proxy_overhead.py):
- uvicorn writes a response's status line and headers, then its body, as two `send(2)` calls:
  two TCP segments on loopback, two wake-ups of the client. `HeadWithBody` holds the head and
  writes it with the first body bytes in one call; a stream's head goes out at the end of the
  loop iteration that produced it, so nothing waits for a first chunk.
- A handler that waits for the teacher must notice the client leaving. Watching
  `receive()` for `http.disconnect` takes a task per request; the connection's own `gone`
  future, resolved when the connection is lost, takes a callback.
- A body that arrived whole with its headers (most do) is read without arming the body timer.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

# Scope keys (under "extensions"): the future resolved when the client disconnects, and a
# flag set once the whole request body has been received.
DISCONNECTED = "apprentice.disconnected"
BODY_RECEIVED = "apprentice.body_received"


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    header_timeout_s = 10.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._header_timer: asyncio.TimerHandle | None = None
        self.gone: asyncio.Future[None] = self.loop.create_future()
        self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        scope: Any = self.scope
        scope.setdefault("extensions", {})[DISCONNECTED] = self.gone
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is not None and cycle.scope is scope:  # (an upgrade creates no cycle)
            cycle.transport = HeadWithBody(self.transport, self.loop)  # type: ignore[assignment]

    def on_message_complete(self) -> None:
        super().on_message_complete()
        scope: Any = self.scope
        scope.setdefault("extensions", {})[BODY_RECEIVED] = True

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if not self.gone.done():
            self.gone.set_result(None)
        super().connection_lost(exc)

    def _arm(self) -> None:
        if getattr(self, "_header_timer", None) is None:
            self._header_timer = self.loop.call_later(self.header_timeout_s, self._too_slow)

    def _disarm(self) -> None:
        timer = getattr(self, "_header_timer", None)
        if timer is not None:
            timer.cancel()
            self._header_timer = None

    def _too_slow(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self.transport.close()


class HeadWithBody:
    """One response's view of the connection: its first write (the status line and headers)
    is held and sent with the next write in one call, or alone at the end of the current loop
    iteration when no body follows in it (a stream waiting for its first chunk)."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None
        self._first = True

    def write(self, data: bytes) -> None:
        if self._first:
            self._first = False
            self._held = data
            self._loop.call_soon(self._flush)
            return
        held, self._held = self._held, None
        if held is None:
            self._transport.write(data)
        else:  # one writev: the head and the body leave in one segment
            self._transport.writelines((held, data))

    def _flush(self) -> None:
        held, self._held = self._held, None
        if held is not None and not self._transport.is_closing():
            self._transport.write(held)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def guarded_protocol(header_timeout_s: float) -> type[Any]:
    """The protocol class for uvicorn's `http=` with this header timeout."""
    return type(
        "GuardedHttpToolsProtocol",
        (GuardedHttpToolsProtocol,),
        {"header_timeout_s": header_timeout_s},
    )
