"""The teacher upstream: byte pass-through for OpenAI-compatible APIs, litellm for the rest.

Pass-through forwards the request (with the route's model name) over one shared, pooled HTTP
client and hands back the response bytes as they arrive, so what the client sees is what the
teacher sent. The client is our own lean HTTP/1.1 one (`proxy.upstream_client`): httpx cost
0.9 ms a request on this path, aiohttp about 160 us of CPU a call, this one about 50 us
(`bench/teacher_client.py`, loopback, the fake teacher). Every other provider goes through
litellm and is converted to OpenAI's shape.
Both retry with backoff on 429, 5xx and connection errors, but only before the first byte:
after that a retry could send the client two different answers. A Retry-After is honoured up
to the route's own timeouts, never longer.

Every byte that comes back is redacted (`proxy.redaction`): a provider's error may quote the
key it was sent. Answers are bounded: a body over `max_response_bytes` is a 502, and a stream
that grows past it is cut with an error event; neither is ever held whole beyond the cap.
"""

from __future__ import annotations

import asyncio
import random
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from monitoring.metrics import Metrics
from proxy.errors import error_body, provider_message
from proxy.event_redaction import EventRedactor
from proxy.redaction import Redactor, StreamRedactor
from proxy.settings import RouteSettings
from proxy.upstream_client import HttpClient
from proxy.upstream_http import (
    BadHttp,
    BodyBroken,
    ConnectFailed,
    Disconnected,
    HttpError,
    ReadTimeout,
    Response,
)

DEFAULT_API_BASE = "https://api.openai.com/v1"
ANTHROPIC_API_BASE = "https://api.anthropic.com"
ANTHROPIC_VERSION = "2023-06-01"
FORWARDED_HEADERS = (
    "x-request-id",
    "request-id",
    "retry-after",
    "openai-processing-ms",
    "openai-version",
)
RETRY_STATUSES = {429, 500, 502, 503, 504, 529}
MAX_RETRY_AFTER_S = 30.0


async def _nothing() -> None:
    return None


@dataclass
class Upstream:
    """The teacher's answer: status, headers to forward, and a body or a byte stream."""

    status: int
    headers: dict[str, str]
    body: bytes | None = None
    chunks: AsyncIterator[bytes] | None = None
    close: Callable[[], Awaitable[None]] = field(default=_nothing)
    error: str | None = None


class UpstreamTooLarge(HttpError):
    """The teacher's answer grew past the route's max_response_bytes."""


class Teacher:
    """Calls the routes' teachers; one instance (and one HTTP client) per server."""

    def __init__(self, client: HttpClient, metrics: Metrics, redactor: Redactor) -> None:
        self.client = client
        self.metrics = metrics
        self.redactor = redactor

    async def call(self, route: RouteSettings, payload: dict[str, Any], stream: bool) -> Upstream:
        """Send one chat completion to the route's teacher; errors come back as `Upstream`."""
        if route.passthrough:
            return await self.post(route, "chat/completions", payload, stream)
        return await self._litellm(route, payload, stream)

    # -- OpenAI-compatible pass-through ------------------------------------------------------

    async def post(
        self, route: RouteSettings, endpoint: str, payload: dict[str, Any], stream: bool
    ) -> Upstream:
        """POST a JSON request to the OpenAI-compatible `{teacher_api_base}/{endpoint}`."""
        body = orjson.dumps(payload | {"model": route.upstream_model})
        return await self.send(route, openai_url(route, endpoint), body, openai_headers(route),
                               stream)  # fmt: skip

    async def anthropic(
        self,
        route: RouteSettings,
        payload: dict[str, Any],
        stream: bool,
        version: str | None,
        path: str = "messages",
    ) -> Upstream:
        """POST an Anthropic request to `{teacher_api_base}/v1/{path}` (Messages, or its
        token count), as is."""
        headers = {"content-type": "application/json", "accept-encoding": "identity",
                   "anthropic-version": version or ANTHROPIC_VERSION}  # fmt: skip
        if route.teacher_api_key is not None:
            headers["x-api-key"] = route.teacher_api_key.get_secret_value()
        base = (route.teacher_api_base or ANTHROPIC_API_BASE).rstrip("/")
        url = base + (f"/{path}" if base.endswith("/v1") else f"/v1/{path}")
        body = orjson.dumps(payload | {"model": route.upstream_model})
        return await self.send(route, url, body, headers, stream)

    async def send(
        self,
        route: RouteSettings,
        url: str,
        body: bytes | AsyncIterator[bytes] | None,
        headers: dict[str, str],
        stream: bool | Literal["relay"],
        method: str = "POST",
    ) -> Upstream:
        """Send a request, retrying 429/5xx and connection errors before the first byte (a
        body that is itself streamed is sent once: it cannot be read again). `stream` hands
        back a successful answer as it arrives."""
        tries = route.max_retries + 1 if body is None or isinstance(body, bytes) else 1
        for attempt in range(tries):
            last = attempt == tries - 1
            try:
                response = await self._request(route, method, url, body, headers, stream)
            except (ConnectFailed, Disconnected, BodyBroken) as exc:
                if last:
                    return _no_more_tries(route, self._unreachable(route, exc))
                self.metrics.teacher_retries.labels(route.name, "connect").inc()
                await asyncio.sleep(_backoff(route, attempt, None))
                continue
            except ReadTimeout as exc:
                return self._timed_out(route, exc)
            except BadHttp as exc:  # an answer HTTP cannot read: a 502
                return self._unreadable(route, exc)
            if response.status in RETRY_STATUSES and not last:
                retry_after = response.headers.get("retry-after")
                response.release()
                self.metrics.teacher_retries.labels(route.name, str(response.status)).inc()
                await asyncio.sleep(_backoff(route, attempt, retry_after))
                continue
            answer = await self._answer(route, response, stream)
            return _no_more_tries(route, answer) if answer.status in RETRY_STATUSES else answer
        raise AssertionError("unreachable")  # pragma: no cover

    async def _request(
        self,
        route: RouteSettings,
        method: str,
        url: str,
        body: bytes | AsyncIterator[bytes] | None,
        headers: dict[str, str],
        stream: bool | Literal["relay"],
    ) -> Response:
        """The teacher's response head. A connection the teacher closed before any byte of its
        answer (closed after its last answer, or by an idle timeout racing this reuse) is not
        the teacher failing: the request goes again at once on a new connection, outside the
        route's retries (a streamed body cannot be sent twice)."""
        # A stream may legitimately run for long; a whole answer has the route's total time.
        total = None if stream else route.total_timeout_s
        for fresh in (False, True):
            try:
                return await self.client.request(
                    method, url, body, headers, fresh=fresh, total_timeout=total,
                    connect_timeout=route.connect_timeout_s, read_timeout=route.read_timeout_s,
                )  # fmt: skip
            except Disconnected as exc:
                if fresh or exc.answered or not isinstance(body, bytes | None):
                    raise  # the teacher broke off its answer: the ordinary retries decide
                self.metrics.teacher_retries.labels(route.name, "connection_closed").inc()
        raise AssertionError("unreachable")  # pragma: no cover

    async def close(self) -> None:
        await self.client.close()

    async def _answer(
        self,
        route: RouteSettings,
        response: Response,
        stream: bool | Literal["relay"],
    ) -> Upstream:
        headers = {
            k.lower(): self.redactor.text(v) for k, v in response.headers.items() if _forwarded(k)
        }
        headers["content-type"] = response.headers.get("content-type", "application/json")
        if stream and response.status < 400:
            # A pass-through download is relayed, never held: the cap bounds held answers.
            limit = sys.maxsize if stream == "relay" else route.max_response_bytes
            # (No content-length: redaction may change the length; the relay is chunked.)
            if stream == "relay" and "content-disposition" in response.headers:
                headers["content-disposition"] = response.headers["content-disposition"]
            events = headers["content-type"].startswith("text/event-stream")
            chunks = _chunks(response, self.redactor, limit, events)
            return Upstream(response.status, headers, chunks=chunks, close=_closer(response))
        try:
            body = self.redactor.document(await _read(response, route.max_response_bytes))
        except UpstreamTooLarge:
            return self._too_large(route)
        except ReadTimeout as exc:
            return self._timed_out(route, exc)
        except HttpError as exc:
            return self._unreachable(route, exc)
        finally:
            response.release()
        if response.status >= 400:
            return self._upstream_error(route, response.status, body, headers)
        return Upstream(response.status, headers, body=body)

    def _upstream_error(
        self, route: RouteSettings, status: int, body: bytes, headers: dict[str, str]
    ) -> Upstream:
        try:
            parsed = orjson.loads(body)
            openai_shaped = isinstance(parsed, dict) and isinstance(parsed.get("error"), dict)
        except orjson.JSONDecodeError:
            openai_shaped = False
        if openai_shaped:  # already what an OpenAI client expects (and redacted): pass it on
            message = str(parsed["error"].get("message", ""))
            return Upstream(status, headers, body=body, error=message)
        snippet = body[:300].decode("utf-8", "replace")
        message = f"The teacher of route {route.name} returned HTTP {status}: {snippet}"
        headers["content-type"] = "application/json"
        body = error_body(message, "upstream_error", "teacher_error")
        return Upstream(status, headers, body=body, error=message)

    def _unreachable(self, route: RouteSettings, exc: Exception) -> Upstream:
        detail = self.redactor.text(f"{type(exc).__name__}: {exc}")
        message = f"The teacher of route {route.name} could not be reached ({detail})."
        body = error_body(message, "upstream_error", "teacher_unreachable")
        return Upstream(502, {"content-type": "application/json"}, body=body, error=message)

    def _unreadable(self, route: RouteSettings, exc: BadHttp) -> Upstream:
        detail = self.redactor.text(str(exc) or type(exc).__name__)
        message = (
            f"The teacher of route {route.name} sent an answer that is not valid HTTP "
            f"({detail}); it was not relayed."
        )
        body = error_body(message, "upstream_error", "teacher_bad_response")
        return Upstream(502, {"content-type": "application/json"}, body=body, error=message)

    def _too_large(self, route: RouteSettings) -> Upstream:
        message = (
            f"The teacher of route {route.name} answered more than {route.max_response_bytes} "
            "bytes (max_response_bytes); the answer was not relayed."
        )
        body = error_body(message, "upstream_error", "teacher_answer_too_large")
        return Upstream(502, {"content-type": "application/json"}, body=body, error=message)

    def _timed_out(self, route: RouteSettings, exc: Exception) -> Upstream:
        message = (
            f"The teacher of route {route.name} did not answer within "
            f"{route.read_timeout_s:g} s between bytes or {route.total_timeout_s:g} s in all "
            f"({type(exc).__name__}); raise read_timeout_s or total_timeout_s if answers are "
            "legitimately slow."
        )
        body = error_body(message, "upstream_error", "teacher_timeout")
        return Upstream(504, {"content-type": "application/json"}, body=body, error=message)

    # -- every other provider, through litellm ----------------------------------------------

    async def _litellm(
        self, route: RouteSettings, payload: dict[str, Any], stream: bool
    ) -> Upstream:
        import litellm

        litellm.suppress_debug_info = True  # else each failure prints a banner to stdout
        params = {k: v for k, v in payload.items() if k not in {"model", "stream"}}
        key = route.teacher_api_key.get_secret_value() if route.teacher_api_key else None
        try:
            result = await litellm.acompletion(
                model=route.teacher,
                api_base=route.teacher_api_base,
                api_key=key,
                stream=stream,
                timeout=route.read_timeout_s,
                num_retries=route.max_retries,
                **params,
            )
        except Exception as exc:  # litellm raises its own hierarchy, mapped once here
            status = int(getattr(exc, "status_code", 502) or 502)
            detail = provider_message(exc)
            message = self.redactor.text(f"The teacher of route {route.name} failed: {detail}")
            body = error_body(message, "upstream_error", "teacher_error")
            failed = Upstream(status, {"content-type": "application/json"}, body=body,
                              error=message)  # fmt: skip
            return _no_more_tries(route, failed)  # litellm has retried (num_retries)
        if not stream:
            body = self.redactor.bytes(_dump(result))
            return Upstream(200, {"content-type": "application/json"}, body=body)
        chunks = _redacted(_sse(result), self.redactor, route.max_response_bytes, events=True)
        return Upstream(200, {"content-type": "text/event-stream"}, chunks=chunks)


def openai_url(route: RouteSettings, endpoint: str) -> str:
    return f"{(route.teacher_api_base or DEFAULT_API_BASE).rstrip('/')}/{endpoint}"


def openai_headers(route: RouteSettings) -> dict[str, str]:
    headers = {"content-type": "application/json", "accept-encoding": "identity"}
    if route.teacher_api_key is not None:
        headers["authorization"] = f"Bearer {route.teacher_api_key.get_secret_value()}"
    return headers


def _no_more_tries(route: RouteSettings, upstream: Upstream) -> Upstream:
    # The proxy has used its own retries: an SDK that retried too would turn one failing call
    # into (1 + its retries) x (1 + ours) teacher calls. The official SDKs honour this header.
    if route.max_retries > 0:
        upstream.headers["x-should-retry"] = "false"
    return upstream


async def _chunks(
    response: Response, redactor: Redactor, limit: int, events: bool
) -> AsyncIterator[bytes]:
    """The body as it arrives (transfer encoding removed), redacted, up to `limit` bytes."""
    async for data in _redacted(response.iter_any(), redactor, limit, events):
        yield data


async def _redacted(
    chunks: AsyncIterator[bytes], redactor: Redactor, limit: int, events: bool
) -> AsyncIterator[bytes]:
    """An event stream is redacted on the text its events add up to (`proxy.event_redaction`),
    any other on its bytes."""
    stream: StreamRedactor | EventRedactor = (
        redactor.stream() if not events else (EventRedactor(redactor))
    )
    size = 0
    async for data in chunks:
        size += len(data)
        if size > limit:
            raise UpstreamTooLarge(f"the teacher's stream passed {limit} bytes")
        if out := stream.feed(data):
            yield out
    if tail := stream.flush():
        yield tail


async def _read(response: Response, limit: int) -> bytes:
    """The whole body, refusing to hold more than `limit` bytes of it."""
    declared = response.content_length
    if declared is not None and declared > limit:
        raise UpstreamTooLarge(f"declared {declared} bytes")
    parts, size = [], 0
    while data := await response.read_any():
        size += len(data)
        if size > limit:
            raise UpstreamTooLarge(f"more than {limit} bytes")
        parts.append(data)
    return b"".join(parts)


def _closer(response: Response) -> Callable[[], Awaitable[None]]:
    async def close() -> None:
        # Releasing an unfinished response drops its connection: the teacher sees the
        # disconnect and stops generating.
        response.release()

    return close


def _dump(model: Any) -> bytes:
    return orjson.dumps(model.model_dump(exclude_none=True))


async def _sse(stream: Any) -> AsyncIterator[bytes]:
    try:
        async for chunk in stream:
            yield b"data: " + _dump(chunk) + b"\n\n"
    except Exception as exc:  # litellm's own hierarchy mid-stream: a stream that broke off,
        # ended by the relay with an error event in the surface's shape (not a dropped socket)
        raise BodyBroken(provider_message(exc)) from exc
    yield b"data: [DONE]\n\n"


def _forwarded(name: str) -> bool:
    name = name.lower()
    return name in FORWARDED_HEADERS or name.startswith(("x-ratelimit-", "anthropic-ratelimit-"))


def _backoff(route: RouteSettings, attempt: int, retry_after: str | None) -> float:
    if retry_after:
        # Never wait longer than the route would wait for an answer at all.
        ceiling = min(MAX_RETRY_AFTER_S, route.read_timeout_s, route.total_timeout_s)
        try:
            return max(0.0, min(float(retry_after), ceiling))
        except ValueError:
            pass
    base: float = route.retry_backoff_s * (2**attempt)
    return base * (0.5 + random.random() / 2)  # jitter: spread retries of many clients
