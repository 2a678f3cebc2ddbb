"""The teachers' HTTP client: a pool of keep-alive connections (`proxy.upstream_http`) per
(scheme, host, port), and one request sent on one of them.

A pooled connection is reused newest first (the one least likely to have been closed by the
server's idle timeout); one idle for `keepalive_s` is closed rather than reused, and at most
`max_idle` wait per server. At most `max_connections` are open at once (aiohttp's limit was
1000 too): beyond, an idle connection to another server is closed, or the request waits for
one to be freed (within its total time). A request on a connection the server had closed fails with
`Disconnected(answered=False)`: the caller may send it again with `fresh=True`.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import AsyncIterator

from proxy.upstream_http import (
    ConnectFailed,
    Connection,
    Disconnected,
    HttpError,
    ReadTimeout,
    Response,
    request_head,
    target,
)

BODILESS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
CHUNKED = "transfer-encoding: chunked\r\n"


class HttpClient:
    def __init__(
        self,
        keepalive_s: float = 30.0,
        max_idle: int = 256,
        tls: ssl.SSLContext | None = None,
        max_connections: int = 1000,
    ) -> None:
        self.keepalive_s = keepalive_s
        self.max_idle = max_idle
        self.max_connections = max_connections
        self._idle: dict[tuple[str, str, int], list[Connection]] = {}
        self._open: set[Connection] = set()
        self._connecting = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._ssl = tls  # None: the system's CAs (SSL_CERT_FILE honoured), made on first need

    async def request(
        self,
        method: str,
        url: str,
        body: bytes | AsyncIterator[bytes] | None,
        headers: dict[str, str],
        *,
        connect_timeout: float,
        read_timeout: float,
        total_timeout: float | None,
        fresh: bool = False,
    ) -> Response:
        """Send a request; its answer once the head has come (the body follows as it comes).
        A streamed body goes chunked; any other in the same write as the head."""
        loop = asyncio.get_running_loop()
        deadline = None if total_timeout is None else loop.time() + total_timeout
        tgt = target(url)
        conn = None if fresh else self._pooled(tgt.key, loop.time())
        if conn is None:
            conn = await self._new(tgt.key, connect_timeout, deadline, fresh)
        response = Response(conn, deadline, read_timeout)
        response.head_only = method == "HEAD"
        conn.response = response
        assert conn.transport is not None
        upload: asyncio.Task[None] | None = None
        if body is None and method in BODILESS:  # as aiohttp: no length on a GET
            conn.transport.write(request_head(method, tgt, headers, ""))
        elif isinstance(body, bytes | None):
            data = body or b""
            framing = f"content-length: {len(data)}\r\n"
            conn.transport.write(request_head(method, tgt, headers, framing) + data)
        else:
            conn.transport.write(request_head(method, tgt, headers, CHUNKED))
            upload = asyncio.ensure_future(_upload(conn, body))
        try:
            await response.wait_head()
        except BaseException:
            response.close()
            raise
        finally:
            if upload is not None and not upload.done():
                # the server answered before the upload ended: it will not read the rest
                upload.cancel()
                conn.abort_later()
        return response

    def _pooled(self, key: tuple[str, str, int], now: float) -> Connection | None:
        idle = self._idle.get(key)
        while idle:
            conn = idle.pop()
            if conn.closed:
                continue
            if now - conn.idle_since > self.keepalive_s:
                conn.abort()
                continue
            conn.reused = True
            return conn
        return None

    async def _new(
        self, key: tuple[str, str, int], timeout: float, deadline: float | None, fresh: bool
    ) -> Connection:
        """A new connection, once fewer than `max_connections` are open (or a pooled one to
        the same server that was freed meanwhile)."""
        loop = asyncio.get_running_loop()
        while len(self._open) + self._connecting >= self.max_connections:
            if self._evict_idle():
                continue
            waiter = loop.create_future()
            self._waiters.append(waiter)
            try:
                async with asyncio.timeout_at(deadline):
                    await waiter
            except TimeoutError:
                raise ReadTimeout("no free connection to the server in time") from None
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
            pooled = None if fresh else self._pooled(key, loop.time())
            if pooled is not None:
                return pooled
        self._connecting += 1
        try:
            return await self._connect(key, timeout)
        finally:
            self._connecting -= 1

    def _evict_idle(self) -> bool:
        for idle in self._idle.values():
            if idle:
                idle.pop(0).abort()  # the oldest: the likeliest to be closed by its server
                return True
        return False

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def _connect(self, key: tuple[str, str, int], timeout: float) -> Connection:
        scheme, host, port = key
        loop = asyncio.get_running_loop()
        tls = self._tls() if scheme == "https" else None
        try:
            async with asyncio.timeout(timeout):
                _, conn = await loop.create_connection(
                    lambda: Connection(self, key), host, port, ssl=tls,
                    server_hostname=host if tls else None,
                )  # fmt: skip
        except TimeoutError:
            raise ConnectFailed(f"no connection to {host}:{port} within {timeout:g} s") from None
        except (OSError, ssl.SSLError) as exc:
            raise ConnectFailed(f"cannot connect to {host}:{port}: {exc}") from exc
        self._open.add(conn)
        return conn

    def _tls(self) -> ssl.SSLContext:
        if self._ssl is None:  # built once: loading the CA store takes milliseconds
            self._ssl = ssl.create_default_context()
        return self._ssl

    # -- called by connections -------------------------------------------------------------

    def park(self, conn: Connection) -> None:
        idle = self._idle.setdefault(conn.key, [])
        if len(idle) >= self.max_idle:
            conn.abort()
            return
        conn.idle_since = asyncio.get_running_loop().time()
        idle.append(conn)
        self._wake_one()

    def forget(self, conn: Connection) -> None:
        if conn in self._open:
            self._open.discard(conn)
            self._wake_one()
        idle = self._idle.get(conn.key)
        if idle and conn in idle:
            idle.remove(conn)

    async def close(self) -> None:
        for conn in list(self._open):
            conn.abort()
        self._idle.clear()
        await asyncio.sleep(0)  # let the transports' close callbacks run


async def _upload(conn: Connection, body: AsyncIterator[bytes]) -> None:
    """A streamed request body, chunked, as it comes; the connection is dropped if it fails."""
    assert conn.transport is not None
    try:
        async for chunk in body:
            if chunk:
                conn.transport.write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
                await conn.drain()
        conn.transport.write(b"0\r\n\r\n")
    except Exception:  # the client's upload failed (it left): the answer fails with it
        conn.abort()


__all__ = ["ConnectFailed", "Disconnected", "HttpClient", "HttpError", "Response"]
