"""The teacher on the lean client, against scripted loopback servers: what each failure of the
wire becomes (a resend, a retry, a 502 or a 504 in OpenAI's shape), and that the teacher's key
is redacted from what comes back."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from monitoring.metrics import Metrics
from proxy.settings import RouteSettings
from proxy.teacher import Teacher, UpstreamTooLarge
from proxy.upstream_client import HttpClient
from tests.proxy.test_upstream_http import Server, answer

KEY = "sk-teacher-3b9d2f7a1c5e8b4d6f0a2c4e"


def route(server: Server, **settings: object) -> RouteSettings:
    return RouteSettings(name="triage", teacher="openai/fake", teacher_api_key=KEY,
                         teacher_api_base=server.url("/v1"), retry_backoff_s=0,
                         **settings)  # type: ignore[arg-type]  # fmt: skip


def teacher() -> tuple[Teacher, Metrics]:
    from proxy.redaction import Redactor

    metrics = Metrics()
    return Teacher(HttpClient(), metrics, Redactor([KEY])), metrics


def retries(metrics: Metrics, reason: str) -> float:
    return metrics.teacher_retries.labels("triage", reason)._value.get()


async def test_a_request_lost_to_a_closed_pooled_connection_is_sent_again_once() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head, _ = await server.read_request(reader)
        assert f"authorization: Bearer {KEY}".encode() in head
        writer.write(
            answer(b'{"n": %d}' % server.connections, "content-type: application/json\r\n")
        )
        await server.read_request(reader)  # the reuse: closed before any byte of an answer

    t, metrics = teacher()
    async with Server(handler) as server:
        r = route(server, max_retries=0)
        assert (await t.post(r, "chat/completions", {}, False)).body == b'{"n": 1}'
        again = await t.post(r, "chat/completions", {}, False)
    await t.close()
    assert again.status == 200 and again.body == b'{"n": 2}'
    assert retries(metrics, "connection_closed") == 1 and retries(metrics, "connect") == 0


async def test_an_answer_that_is_not_http_is_a_502_that_says_so() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        flood = b"".join(b"x-%d: %d\r\n" % (i, i) for i in range(2000))
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n" + flood + b"\r\n{}")
        await reader.read()

    t, _ = teacher()
    async with Server(handler) as server:
        upstream = await t.post(route(server, max_retries=0), "chat/completions", {}, False)
    await t.close()
    assert upstream.status == 502 and upstream.body is not None
    error = orjson.loads(upstream.body)["error"]
    assert "not valid HTTP" in error["message"] and error["code"] == "teacher_bad_response"


async def test_too_large_answers_declared_or_not_are_502_and_streams_are_cut() -> None:
    big = b'{"x": "' + b"a" * 5000 + b'"}'

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        writer.write(answer(big))  # declared
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        writer.write(b"".join(b"100\r\n" + b"b" * 256 + b"\r\n" for _ in range(20)))
        writer.write(b"0\r\n\r\n")  # undeclared: counted as it comes
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                     b"transfer-encoding: chunked\r\n\r\n")  # fmt: skip
        writer.write(b"".join(b"100\r\n" + b"c" * 256 + b"\r\n" for _ in range(20)))
        await reader.read()

    t, _ = teacher()
    async with Server(handler) as server:
        r = route(server, max_retries=0, max_response_bytes=1024)
        for _ in range(2):
            upstream = await t.post(r, "chat/completions", {}, False)
            assert upstream.status == 502 and upstream.body is not None
            assert orjson.loads(upstream.body)["error"]["code"] == "teacher_answer_too_large"
        stream = await t.post(r, "chat/completions", {}, True)
        assert stream.status == 200 and stream.chunks is not None
        with pytest.raises(UpstreamTooLarge):
            async for _ in stream.chunks:
                pass
        await stream.close()
    await t.close()


async def test_a_silent_teacher_is_a_504_and_a_refused_one_502_after_its_retries() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        await reader.read()

    t, metrics = teacher()
    async with Server(silent) as server:
        upstream = await t.post(route(server, read_timeout_s=0.2), "chat/completions", {}, False)
        assert upstream.status == 504 and upstream.body is not None
        assert orjson.loads(upstream.body)["error"]["code"] == "teacher_timeout"
        gone = route(server, max_retries=2)
    refused = await t.post(gone, "chat/completions", {}, False)  # the server has closed
    await t.close()
    assert refused.status == 502 and refused.body is not None
    assert orjson.loads(refused.body)["error"]["code"] == "teacher_unreachable"
    assert refused.headers["x-should-retry"] == "false"
    assert retries(metrics, "connect") == 2


async def test_a_key_the_teacher_echoes_never_comes_back() -> None:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head, _ = await server.read_request(reader)
        said = head.split(b"authorization: ")[1].split(b"\r\n")[0]
        body = b'{"error": {"message": "bad key ' + said + b'"}}'
        writer.write(answer(body, f"x-request-id: id {KEY}\r\n").replace(b"200 OK", b"401 No"))

    t, _ = teacher()
    async with Server(echo) as server:
        upstream = await t.post(route(server), "chat/completions", {}, False)
    await t.close()
    assert upstream.status == 401 and upstream.body is not None
    assert KEY.encode() not in upstream.body and KEY not in str(upstream.headers)
    assert b"[redacted]" in upstream.body
