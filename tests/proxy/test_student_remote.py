"""RemoteStudent against a tiny fake OpenAI-compatible server on loopback."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from proxy.student_protocol import StudentError
from proxy.student_remote import RemoteStudent

TOKENS = ['{"', "intent", '":', ' "refund"', "}"]
LOGPROBS = [-0.1, -0.2, -0.05, -0.4, -0.25]


def _entry(token: str, logprob: float, k: int) -> dict[str, Any]:
    tops = [{"token": token, "logprob": logprob, "bytes": list(token.encode())}]
    tops += [{"token": f"alt{i}", "logprob": logprob - 1 - i, "bytes": []} for i in range(k - 1)]
    return {"token": token, "logprob": logprob, "bytes": list(token.encode()), "top_logprobs": tops}


class FakeRemote:
    """Answers TOKENS with logprobs, as vLLM would; records what it was asked."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.status = 200

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(body)
        self.headers.append(dict(request.headers))
        if self.status != 200:
            return web.json_response({"error": {"message": "adapter not loaded"}}, status=500)
        k = body.get("top_logprobs") or 0
        entries = [_entry(t, lp, k) for t, lp in zip(TOKENS, LOGPROBS, strict=True)]
        if body.get("stream"):
            return await self._stream(request, body, entries)
        return web.json_response(
            {
                "id": "cmpl-remote",
                "object": "chat.completion",
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "".join(TOKENS)},
                        "logprobs": {"content": entries} if body.get("logprobs") else None,
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17},
            }
        )

    async def _stream(
        self, request: web.Request, body: dict[str, Any], entries: list[dict[str, Any]]
    ) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)

        async def send(chunk: dict[str, Any]) -> None:
            await response.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")

        await send({"choices": [{"index": 0, "delta": {"role": "assistant"}}]})
        for token, entry in zip(TOKENS, entries, strict=True):
            choice = {"index": 0, "delta": {"content": token}, "logprobs": {"content": [entry]}}
            await send({"choices": [choice]})
        await send({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        if (body.get("stream_options") or {}).get("include_usage"):
            usage = {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17}
            await send({"choices": [], "usage": usage})
        await response.write(b"data: [DONE]\n\n")
        return response


@pytest.fixture
async def remote() -> AsyncIterator[tuple[FakeRemote, str]]:
    fake = FakeRemote()
    app = web.Application()
    app.router.add_post("/v1/chat/completions", fake.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield fake, str(server.make_url("/v1"))
    await server.close()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as shared:
        yield shared


def student(session: aiohttp.ClientSession, base_url: str) -> RemoteStudent:
    return RemoteStudent(
        session, name="triage", base_url=base_url, model="triage-lora-v3", api_key="sk-remote"
    )


def ask(**extra: Any) -> dict[str, Any]:
    return {"model": "triage", "messages": [{"role": "user", "content": "refund 123"}], **extra}


MEAN = sum(LOGPROBS) / len(LOGPROBS)


async def test_complete_asks_for_logprobs_and_strips_them(
    remote: tuple[FakeRemote, str], session: aiohttp.ClientSession
) -> None:
    fake, url = remote
    result = await student(session, url).complete(ask())
    sent = fake.requests[-1]
    assert sent["model"] == "triage-lora-v3" and sent["logprobs"] is True
    assert sent["top_logprobs"] == 1 and sent["stream"] is False
    assert fake.headers[-1]["Authorization"] == "Bearer sk-remote"
    response = result.response
    assert response["model"] == "triage" and response["object"] == "chat.completion"
    assert response["choices"][0]["message"]["content"] == "".join(TOKENS)
    assert response["choices"][0]["logprobs"] is None  # the client did not ask
    assert response["usage"] == {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17}
    assert result.mean_logprob == pytest.approx(MEAN)


async def test_complete_passes_requested_logprobs(
    remote: tuple[FakeRemote, str], session: aiohttp.ClientSession
) -> None:
    fake, url = remote
    result = await student(session, url).complete(ask(logprobs=True, top_logprobs=3))
    assert fake.requests[-1]["top_logprobs"] == 3
    entries = result.response["choices"][0]["logprobs"]["content"]
    assert [e["token"] for e in entries] == TOKENS
    assert all(len(e["top_logprobs"]) == 3 for e in entries)
    result = await student(session, url).complete(ask(logprobs=True))  # top_logprobs 0
    entries = result.response["choices"][0]["logprobs"]["content"]
    assert len(entries) == 5 and all(e["top_logprobs"] == [] for e in entries)


async def test_stream_rebuilds_chunks_under_the_route_name(
    remote: tuple[FakeRemote, str], session: aiohttp.ClientSession
) -> None:
    fake, url = remote
    stream = student(session, url).stream(ask(stream=True))
    chunks = [c async for c in stream]
    assert fake.requests[-1]["stream_options"] == {"include_usage": True}
    assert all(c["model"] == "triage" for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"  # no usage chunk: not asked
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert text == "".join(TOKENS)
    assert all(c["choices"][0].get("logprobs") is None for c in chunks)
    assert stream.result.mean_logprob == pytest.approx(MEAN)
    assert stream.result.response["usage"]["completion_tokens"] == 5


async def test_stream_with_usage_and_logprobs(
    remote: tuple[FakeRemote, str], session: aiohttp.ClientSession
) -> None:
    _, url = remote
    payload = ask(stream=True, stream_options={"include_usage": True}, logprobs=True)
    chunks = [c async for c in student(session, url).stream(payload)]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] == 17
    content = [c for c in chunks[1:-2]]
    assert [c["choices"][0]["logprobs"]["content"][0]["token"] for c in content] == TOKENS


async def test_remote_errors_are_student_errors(
    remote: tuple[FakeRemote, str], session: aiohttp.ClientSession
) -> None:
    fake, url = remote
    fake.status = 500
    with pytest.raises(StudentError, match="500"):
        await student(session, url).complete(ask())
    with pytest.raises(StudentError, match="500"):
        async for _ in student(session, url).stream(ask(stream=True)):
            pass
    unreachable = student(session, "http://127.0.0.1:9/v1")
    with pytest.raises(StudentError, match="unreachable"):
        await unreachable.complete(ask())


async def test_supports_and_refuses_unsupported(session: aiohttp.ClientSession) -> None:
    backend = student(session, "http://127.0.0.1:9/v1")
    assert backend.supports(ask()) is None
    assert backend.supports(ask(n=3)) == "n>1"
    with pytest.raises(StudentError, match="tools"):
        await backend.complete(ask(tools=[{"type": "function"}]))
