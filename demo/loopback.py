"""The one base of every fake provider: a small HTTP server on loopback, on its own event loop.

The demo's simulated teacher, the tests' fake teacher and the benchmarks' teacher are such
servers. In a thread: `start()` returns once the port accepts, `stop()` closes it. In a
process of its own (a benchmark, so that the fake never shares the measured server's GIL):
`serve_forever(port)`. `base_url` is the OpenAI base URL to point a client at. Subclasses
implement `_serve(reader, writer)` for one connection.
"""

from __future__ import annotations

import asyncio
import threading
from types import TracebackType
from typing import Self


class LoopbackServer:
    host = "127.0.0.1"
    thread_name = "loopback-server"

    def _init_server(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self.port = 0

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """The OpenAI base URL clients (or the proxy's route) point at."""
        return f"http://{self.host}:{self.port}/v1"

    def start(self) -> None:
        """Listen on a free loopback port in a background thread; returns once it accepts."""
        self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
        self._thread.start()
        if not self._ready.wait(10) or not self.port:
            raise RuntimeError(f"The {self.thread_name} did not start listening within 10 s.")

    def serve_forever(self, port: int) -> None:
        """Serve on `port` in the calling thread until the process is stopped."""
        try:
            import uvloop  # the fastest loop where installed; fakes must not be the limit

            loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
        except ImportError:
            loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._server = loop.run_until_complete(self._listen(port))
        self.port = self._server.sockets[0].getsockname()[1]
        loop.run_forever()

    async def _listen(self, port: int) -> asyncio.Server:
        return await asyncio.start_server(self._serve, self.host, port, backlog=4096)

    def stop(self) -> None:
        """Close the server and its thread."""
        loop, server = self._loop, self._server
        if loop is not None and server is not None and loop.is_running():
            loop.call_soon_threadsafe(server.close)
            loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)  # this thread's own loop, for gather() at shutdown
        self._loop = loop
        try:
            self._server = loop.run_until_complete(self._listen(0))
            self.port = self._server.sockets[0].getsockname()[1]
        finally:
            self._ready.set()
        try:
            loop.run_forever()
        finally:
            # Open keep-alive connections still have tasks; end them while the loop runs.
            pending = asyncio.all_tasks(loop)
            for t in pending:
                t.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.close()
