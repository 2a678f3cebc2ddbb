"""A fake teacher: a real HTTP/1.1 server on loopback, in its own thread, that speaks the wire
formats of the official OpenAI and Anthropic clients.

It is the only fake in the tests (the teacher provider is outside the project). It answers
chat completions, the Responses API, embeddings, legacy completions, model look-ups and
Anthropic Messages, every surface by the same rule (`answers.py`). It writes its SSE streams
in pieces split at arbitrary byte boundaries, can be slow before answering and between
chunks, and can be told to fail the next requests (any status, any body, or a dropped
connection). Every request it receives is recorded for assertions.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import socket
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from demo.loopback import LoopbackServer
from tests.fakes import embeddings
from tests.fakes.chat import ChatApi
from tests.fakes.completions import CompletionsApi
from tests.fakes.errors import ApiError, ErrorShape, anthropic_error, openai_error
from tests.fakes.files import FilesApi
from tests.fakes.messages import MessagesApi
from tests.fakes.responses import ResponsesApi
from tests.fakes.wire import (
    Reply,
    Request,
    parse_json,
    read_request,
    split,
    write_json,
    write_stream,
)

MODEL_CREATED = 1_700_000_000  # a fixed date, so that model objects compare across runs


@dataclass
class Failure:
    """What to do instead of answering one request."""

    status: int = 500
    body: bytes | None = None  # default: an error in the endpoint's own shape
    retry_after: float | None = None
    drop_connection: bool = False


@dataclass
class Received:
    path: str  # the request target as sent, query included
    headers: dict[str, str]
    body: dict[str, Any]  # {} when the body was empty or not a JSON object
    method: str = "POST"
    raw: bytes = b""


@dataclass
class Call:
    """One routed request, as a surface's handler sees it."""

    request: Request
    payload: dict[str, Any]
    params: dict[str, str]


@dataclass(frozen=True)
class Route:
    method: str
    tail: re.Pattern[str]  # matched at the end of the path, so any base-URL prefix works
    handler: Callable[[Call], Reply]
    anthropic: bool = False  # errors in Anthropic's shape
    spares_failures: bool = False  # never consumes a queued Failure (a health probe)
    any_body: bool = False  # takes a body that is not JSON (a multipart upload)


@dataclass
class FakeTeacher(LoopbackServer):
    """Answers every surface by rule: `echo: <last user text>`, a tool call when tools are
    offered (and the text mentions "weather"), JSON when the request asks for it."""

    latency_s: float = 0.0
    chunk_delay_s: float = 0.0
    split_seed: int | None = 7  # None: one write per SSE event
    model: str = "fake-teacher-1"
    failures: deque[Failure] = field(default_factory=deque)
    received: list[Received] = field(default_factory=list)
    answer: Any = None  # optional callable(request_body) -> str content, on every surface
    mutate: Any = None  # optional callable(answer dict) -> dict: odd answers on purpose
    delta_chars: int | None = None  # stream text in pieces of this many characters
    # Connections the teacher closes: "announced" (Connection: close), "after_answer" (closed
    # right after answering, unannounced), "on_reuse" (a kept-alive connection's next request
    # is met with a close, as when an idle timeout races the client's reuse).
    closes: str | None = None
    streams_aborted: int = 0  # streams the other side closed before the end
    cut_streams_after: int | None = None  # write this many pieces of a stream, then hang up

    thread_name = "fake teacher"

    def __post_init__(self) -> None:
        self._init_server()
        self._rng = random.Random(self.split_seed)
        self.chat = ChatApi(self)
        self.responses = ResponsesApi(self)
        self.messages = MessagesApi(self)
        self.completions = CompletionsApi(self)
        self.files = FilesApi()
        self.routes = self._routes()

    def fail_next(self, *failures: Failure) -> None:
        self.failures.extend(failures)

    # The chat surface's builders, kept here for the tests that call them directly.

    def completion(self, payload: dict[str, Any]) -> dict[str, Any]:
        return self.chat.completion(payload)

    def chunks(self, payload: dict[str, Any]) -> list[dict[str, Any]]:
        return self.chat.chunks(payload)

    def content_for(self, payload: dict[str, Any]) -> str:
        return self.chat.content_for(payload)

    def tool_call(self, payload: dict[str, Any]) -> dict[str, Any] | None:
        return self.chat.tool_call(payload)

    def logprobs(self, content: str, payload: dict[str, Any]) -> list[dict[str, Any]]:
        return self.chat.logprobs(content, payload)

    # -- routes ----------------------------------------------------------------------------

    def _routes(self) -> list[Route]:
        def route(method: str, tail: str, handler: Callable[[Call], Reply], **kw: bool) -> Route:
            return Route(method, re.compile(tail + "$"), handler, **kw)

        responses, messages, one = self.responses, self.messages, r"/responses/(?P<id>[^/]+)"
        return [  # first match wins: /chat/completions before /completions
            route("GET", r"/models", self._model_list, spares_failures=True),
            route("GET", r"/models/(?P<id>[^/]+)", self._model),
            route("POST", r"/chat/completions", lambda c: self.chat.create(c.payload)),
            route("POST", r"/completions", lambda c: self.completions.create(c.payload)),
            route("POST", r"/embeddings", lambda c: embeddings.create(self, c.payload)),
            route("POST", r"/responses", lambda c: responses.create(c.payload)),
            route("GET", one, lambda c: responses.retrieve(c.params["id"])),
            route("DELETE", one, lambda c: responses.delete(c.params["id"])),
            route(
                "POST",
                r"/messages/count_tokens",
                lambda c: messages.count(c.payload),
                anthropic=True,
            ),
            route("POST", r"/messages", lambda c: self.messages.create(c.payload), anthropic=True),
            route("POST", r"/files", lambda c: self.files.create(c.request), any_body=True),
            route("GET", r"/files", lambda c: self.files.list()),
            route("GET", r"/files/(?P<id>[^/]+)", lambda c: self.files.retrieve(c.params["id"])),
            route("DELETE", r"/files/(?P<id>[^/]+)", lambda c: self.files.delete(c.params["id"])),
        ]

    def _match(self, request: Request) -> tuple[Route | None, dict[str, str]]:
        for route in self.routes:
            found = route.tail.search(request.path)
            if found and route.method == request.method:
                return route, found.groupdict()
        return None, {}

    def _model_list(self, call: Call) -> Reply:
        return Reply(body={"object": "list", "data": []})

    def _model(self, call: Call) -> Reply:
        model_id = call.params["id"]
        if "anthropic-version" in call.request.headers:  # the same path, Anthropic's ModelInfo
            created = datetime.fromtimestamp(MODEL_CREATED, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            info: dict[str, Any] = {"type": "model", "id": model_id, "display_name": model_id}
            return Reply(body=info | {"created_at": created, "lifecycle": "active"})
        info = {"id": model_id, "object": "model", "created": MODEL_CREATED}
        return Reply(body=info | {"owned_by": "fake-teacher"})

    # -- HTTP ------------------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            served = 0
            while True:
                request = await read_request(reader)
                if self.closes == "on_reuse" and served:
                    break
                served += 1
                if not await self._respond(request, writer) or self.closes == "after_answer":
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        except ValueError:  # a request line or a chunk size that is not HTTP: hang up
            pass
        except asyncio.CancelledError:
            # stop() cancels idle keep-alive connections; Python 3.11's stream callback calls
            # task.exception() on a cancelled task and logs it as an error. End quietly.
            pass
        finally:
            writer.close()

    async def _respond(self, request: Request, w: asyncio.StreamWriter) -> bool:
        """Answer one request; False to close the connection."""
        payload, is_json = parse_json(request.raw)
        self.received.append(
            Received(request.target, request.headers, payload, request.method, request.raw)
        )
        route, params = self._match(request)
        anthropic = "anthropic-version" in request.headers or bool(route and route.anthropic)
        shape: ErrorShape = anthropic_error if anthropic else openai_error
        headers = {"x-request-id": f"fake-{len(self.received)}"}
        if self.closes == "announced":
            headers["connection"] = "close"
        if anthropic:
            headers["request-id"] = f"req_fake{len(self.received):020d}"
        if self.failures and not (route and route.spares_failures):
            failure = self.failures.popleft()
            if failure.drop_connection:
                return False
            await self._fail(w, failure, shape, headers)
            return request.keep_alive
        reply = await self._reply(route, Call(request, payload, params), is_json)
        if isinstance(reply, ApiError):
            error = shape(
                reply.status,
                reply.message,
                param=reply.param,
                code=reply.code,
                request_id=headers.get("request-id", ""),
            )
            reply = Reply(reply.status, error)
        if not await self._send(w, reply, headers):
            return False
        return request.keep_alive and self.closes != "announced"

    async def _reply(self, route: Route | None, call: Call, is_json: bool) -> Reply | ApiError:
        request = call.request
        if route is None:
            return ApiError(404, f"Invalid URL ({request.method} {request.path})")
        if not is_json and not route.any_body:
            return ApiError(
                400, "We could not parse the JSON body of your request: it is not a JSON object."
            )
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        try:
            return route.handler(call)
        except ApiError as exc:
            return exc

    async def _fail(
        self, w: asyncio.StreamWriter, failure: Failure, shape: ErrorShape, headers: dict[str, str]
    ) -> None:
        if failure.retry_after:
            headers["retry-after"] = str(failure.retry_after)
        message = f"fake failure {failure.status}"
        request_id = headers.get("request-id", "")
        body = failure.body or orjson.dumps(shape(failure.status, message, request_id=request_id))
        await write_json(w, failure.status, body, headers)

    async def _send(self, w: asyncio.StreamWriter, reply: Reply, headers: dict[str, str]) -> bool:
        """Write the reply; False when a stream was cut (the connection is to be closed)."""
        if reply.stream is None:
            await write_json(w, reply.status, orjson.dumps(reply.body), headers)
            return True
        pieces = split(reply.stream, None if self.split_seed is None else self._rng)
        cut = self.cut_streams_after is not None and len(pieces) > self.cut_streams_after
        if cut:
            pieces = pieces[: self.cut_streams_after]
        try:
            await write_stream(w, pieces, headers, self.chunk_delay_s, end=not cut)
        except ConnectionError:
            self.streams_aborted += 1
            raise
        return not cut


if __name__ == "__main__":  # `python -m tests.fakes.teacher --port P`: the benchmarks' teacher
    parser = argparse.ArgumentParser(description="the fake OpenAI and Anthropic teacher")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--latency-s", type=float, default=0.0)
    args = parser.parse_args()
    FakeTeacher(split_seed=None, latency_s=args.latency_s).serve_forever(args.port)
