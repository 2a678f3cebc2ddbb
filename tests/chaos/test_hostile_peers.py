"""Clients and teachers that misbehave: deep JSON, slow headers and bodies, odd types, huge
answers, long Retry-After. Each gets a bounded, clear answer and no row is lost."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from logbook.segments import open_segments
from proxy.settings import ServerSettings
from tests.conftest import CLIENT_KEY, RunningProxy, proxy_config
from tests.fakes.teacher import Failure, FakeTeacher

AUTH = {"authorization": f"Bearer {CLIENT_KEY}"}
HELLO = [{"role": "user", "content": "hello"}]


def chat(proxy: RunningProxy, **body: Any) -> httpx.Response:
    return httpx.post(f"{proxy.base_url}/chat/completions", headers=AUTH, timeout=30,
                      json={"model": "triage", "messages": HELLO} | body)  # fmt: skip


def logged(data_dir: Path) -> list[dict[str, Any]]:
    cur = open_segments(data_dir).execute("SELECT * FROM requests ORDER BY seq")
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def test_json_nested_too_deep_is_a_400_not_a_500(proxy: RunningProxy) -> None:
    for depth in (65, 300, 1000):  # orjson parses up to 1024 levels but writes only 254
        deep = b"[" * depth + b'"x"' + b"]" * depth
        body = b'{"model": "triage", "messages": [{"role": "user", "content": "hi"}], '
        response = httpx.post(f"{proxy.base_url}/chat/completions", headers=AUTH,
                              content=body + b'"metadata": {"deep": ' + deep + b"}}")  # fmt: skip
        assert response.status_code == 400, (depth, response.text)
        assert "deeper than 64 levels" in response.json()["error"]["message"]
    assert chat(proxy, response_format={"type": "json_schema", "json_schema": {
        "name": "n", "schema": {"type": "object", "properties": {"a": {"type": "object"}}}}},
    ).status_code == 200  # fmt: skip


def test_slow_headers_and_slow_bodies_are_cut_off(tmp_path: Path, teacher: FakeTeacher) -> None:
    config = proxy_config(tmp_path / "data", teacher)
    server = ServerSettings.model_validate(
        config.server.model_dump() | {"header_timeout_s": 0.5, "body_timeout_s": 0.5}
    )
    with RunningProxy(config.model_copy(update={"server": server})) as proxy:
        with socket.create_connection(("127.0.0.1", proxy.port)) as slowloris:
            slowloris.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n")
            started = time.monotonic()
            slowloris.settimeout(5)
            assert slowloris.recv(100) == b""  # closed by the server...
            assert time.monotonic() - started < 3  # ...once its header time ran out
        with socket.create_connection(("127.0.0.1", proxy.port)) as trickle:
            head = (
                "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n"
                f"authorization: Bearer {CLIENT_KEY}\r\ncontent-type: application/json\r\n"
                "content-length: 500\r\n\r\n"
            )
            trickle.sendall(head.encode() + b'{"model": "triage", ')
            trickle.settimeout(5)
            answer = trickle.recv(4096)
            assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
            assert b"body_timeout_s" in answer
        assert chat(proxy).status_code == 200  # everyone else is served as usual


def test_odd_types_in_an_answer_never_lose_its_row(tmp_path: Path) -> None:
    def odd(completion: dict[str, Any]) -> dict[str, Any]:
        completion["usage"] = {"prompt_tokens": "ten", "completion_tokens": None}
        completion["choices"][0]["finish_reason"] = 3
        completion["model"] = ["not", "a", "string"]
        return completion

    with FakeTeacher(mutate=odd) as teacher:
        config = proxy_config(tmp_path / "data", teacher)
        with RunningProxy(config) as proxy:
            ids = [chat(proxy).headers["x-apprentice-request-id"] for _ in range(3)]
            ids += [chat(proxy, stream=True).headers["x-apprentice-request-id"]]
            metrics = httpx.get(f"{proxy.url}/metrics").text
    rows = logged(config.data_dir)
    assert [r["request_id"] for r in rows] == ids
    assert all(r["usage_estimated"] and r["finish_reason"] is None for r in rows)
    assert "apprentice_capture_rows_rejected_total 0.0" in metrics


def test_a_huge_answer_is_a_502_and_a_huge_stream_is_cut(tmp_path: Path) -> None:
    big = "word " * 60_000  # ~300 kB
    with FakeTeacher(answer=lambda payload: big) as teacher:
        config = proxy_config(tmp_path / "data", teacher, max_response_bytes=100_000)
        with RunningProxy(config) as proxy:
            whole = chat(proxy)
            assert whole.status_code == 502
            assert whole.json()["error"]["code"] == "teacher_answer_too_large"
            stream = chat(proxy, stream=True)
            assert stream.status_code == 200 and "max_response_bytes" in stream.text
            assert "[DONE]" not in stream.text
    rows = logged(config.data_dir)
    assert [(r["status"], r["outcome"]) for r in rows] == [(502, "upstream_error"),
                                                         (200, "upstream_error")]  # fmt: skip
    assert rows[1]["truncated"]


def test_retry_after_is_capped_by_the_routes_timeouts(tmp_path: Path, teacher: FakeTeacher) -> None:
    config = proxy_config(tmp_path / "data", teacher, read_timeout_s=1.0, total_timeout_s=1.0)
    with RunningProxy(config) as proxy:
        teacher.fail_next(Failure(status=429, retry_after=30))
        started = time.monotonic()
        response = chat(proxy)
        assert response.status_code == 200
        assert time.monotonic() - started < 5  # not the 30 s the teacher asked for
    assert orjson.loads(response.content)["choices"][0]["message"]["content"] == "echo: hello"


def test_a_messages_stream_cut_midway_raises_in_anthropic_python(tmp_path: Path) -> None:
    import anthropic

    from tests.proxy.test_surfaces import ant, with_teacher

    ask: Any = {"max_tokens": 64, "messages": [{"role": "user", "content": "a long story"}]}
    for teacher_model in ("anthropic/claude-fake", "openai/fake-teacher-1"):
        with FakeTeacher(split_seed=None, cut_streams_after=4) as teacher:
            # (upstream: no route here needs litellm, whose import a stop would wait for)
            config = with_teacher(tmp_path / teacher_model.split("/")[0], teacher, teacher_model,
                                  max_retries=0, upstream="passthrough")  # fmt: skip
            with RunningProxy(config) as proxy:
                client = ant(proxy.url)
                with (
                    pytest.raises(anthropic.APIStatusError, match="stream broke off"),
                    client.messages.stream(model="triage", **ask) as stream,
                ):
                    stream.get_final_message()
                with pytest.raises(anthropic.APIStatusError, match="stream broke off"):
                    for _ in ant(proxy.url).messages.create(model="triage", stream=True, **ask):
                        pass
            [row, _] = logged(config.data_dir)
            assert row["outcome"] == "upstream_error" and "broke off" in row["error"], teacher_model


class HeaderFlood:
    """A teacher that answers every request with 2,000 headers, then hangs up."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.base_url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/v1"
        threading.Thread(target=self._serve, daemon=True, name="header flood").start()

    def _serve(self) -> None:
        flood = "".join(f"x-flood-{i}: {i}\r\n" for i in range(2000))
        head = f"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n{flood}"
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:  # closed by the test
                return
            with conn:
                conn.recv(1 << 16)
                conn.sendall(head.encode() + b"\r\n{}")

    def close(self) -> None:
        self.sock.close()


def test_a_teacher_answering_with_2000_headers_is_a_502_in_the_callers_shape(
    tmp_path: Path,
) -> None:
    flood = HeaderFlood()
    try:
        config = proxy_config(tmp_path / "data", flood, max_retries=0)  # type: ignore[arg-type]
        with RunningProxy(config) as proxy:
            answer = chat(proxy)
            assert answer.status_code == 502, answer.text
            assert "not valid HTTP" in answer.json()["error"]["message"]
            ask = {"model": "triage", "max_tokens": 8, "messages": HELLO}
            message = httpx.post(f"{proxy.url}/v1/messages", headers=AUTH, timeout=30, json=ask)
            assert message.status_code == 502 and message.json()["type"] == "error"
    finally:
        flood.close()
    assert [r["status"] for r in logged(tmp_path / "data")] == [502, 502]
