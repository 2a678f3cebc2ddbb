"""A small HTTP server on a free loopback port, run by its own event loop in a thread.

The simulated teacher (and the tests' fake teacher) are such servers: `start()` returns once
the port accepts, `stop()` closes it, `base_url` is the OpenAI base URL to point a client at.
Subclasses implement `_serve(reader, writer)` for one connection.
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
            self._server = loop.run_until_complete(
                asyncio.start_server(self._serve, self.host, 0, backlog=2048)
            )
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
