"""The proxy, driven by the official openai client against a fake teacher on loopback."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import openai
import orjson
import pytest

from logbook.segments import open_segments
from tests.conftest import CLIENT_KEY, TEACHER_KEY, RunningProxy, proxy_config
from tests.fakes.teacher import FakeTeacher

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


def client(proxy: RunningProxy, **kw: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=proxy.base_url, api_key=CLIENT_KEY, max_retries=0, **kw)


def logged(proxy: RunningProxy) -> list[dict[str, Any]]:
    """Stop the proxy (drain + seal) and read every logged row from the segments."""
    proxy.stop()
    con = open_segments(proxy.config.data_dir)
    cur = con.execute("SELECT * FROM requests ORDER BY seq")
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def test_non_streaming_answer_is_the_teachers_and_is_logged(
    proxy: RunningProxy, teacher: FakeTeacher
) -> None:
    raw = client(proxy).chat.completions.with_raw_response.create(
        model="triage",
        messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
        extra_headers={"x-apprentice-task": "greet", "x-apprentice-session": "s-1"},
    )
    answer = raw.parse()
    assert answer.choices[0].message.content == "echo: hi"
    request_id = raw.headers["x-apprentice-request-id"]
    assert raw.headers["x-apprentice-served-by"] == "teacher"
    # the teacher got its own model name and key, never the client's key
    sent = teacher.received[-1]
    assert sent.body["model"] == "fake-teacher-1"
    assert sent.headers["authorization"] == f"Bearer {TEACHER_KEY}"
    rows = logged(proxy)
    assert len(rows) == 1
    row = rows[0]
    assert row["request_id"] == request_id
    assert (row["route"], row["task"], row["served_by"], row["outcome"]) == (
        "triage",
        "greet",
        "teacher",
        "ok",
    )
    assert row["session_hash"] and row["session_hash"] != "s-1"
    assert row["key_id"].startswith("key_") and CLIENT_KEY not in json.dumps(row, default=str)
    assert json.loads(row["response"])["choices"][0]["message"]["content"] == "echo: hi"
    assert (row["prompt_tokens"], row["completion_tokens"]) == (11, 2)
    assert row["cost_usd"] == pytest.approx((11 * 1.0 + 2 * 2.0) / 1e6)
    assert row["latency_ms"] > 0 and row["prompt_fingerprint"]


async def test_streaming_relays_chunks_and_logs_the_reassembled_answer(
    proxy: RunningProxy,
) -> None:
    aclient = openai.AsyncOpenAI(base_url=proxy.base_url, api_key=CLIENT_KEY, max_retries=0)
    stream = await aclient.chat.completions.create(
        model="triage",
        messages=[{"role": "user", "content": "stream me a reply please"}],
        stream=True,
        stream_options={"include_usage": True},
        logprobs=True,
        top_logprobs=2,
    )
    text, usage, logprob_tokens = "", None, []
    async for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        for choice in chunk.choices:
            text += choice.delta.content or ""
            if choice.logprobs and choice.logprobs.content:
                logprob_tokens += [lp.token for lp in choice.logprobs.content]
    await aclient.close()
    assert text == "echo: stream me a reply please"
    assert usage is not None and usage.prompt_tokens == 11
    assert logprob_tokens == text.split(" ")
    [row] = logged(proxy)
    assert row["stream"] and not row["truncated"] and row["outcome"] == "ok"
    response = json.loads(row["response"])
    assert response["object"] == "chat.completion"
    assert response["choices"][0]["message"]["content"] == text
    assert response["choices"][0]["finish_reason"] == "stop"
    assert json.loads(row["teacher_logprobs"])["content"][0]["token"] == "echo:"
    assert row["ttft_ms"] is not None and row["ttft_ms"] <= row["latency_ms"]


@pytest.mark.parametrize("stream", [False, True])
def test_responses_are_byte_identical_to_the_teachers(
    proxy: RunningProxy, teacher: FakeTeacher, stream: bool
) -> None:
    body = {
        "model": "triage",
        "messages": [{"role": "user", "content": "what is the weather"}],
        "tools": [WEATHER_TOOL],
        "n": 2,
        "stream": stream,
    }
    via_proxy = httpx.post(
        f"{proxy.base_url}/chat/completions",
        json=body,
        headers={"authorization": f"Bearer {CLIENT_KEY}"},
    )
    # The fake's answers are deterministic but for `created`; ask it directly right after.
    direct = httpx.post(f"{teacher.base_url}/chat/completions", json=body | {"model": "x"})

    def canon(data: bytes) -> bytes:
        return re.sub(rb'"created":\d+', b'"created":0', data)

    assert via_proxy.status_code == 200
    assert canon(via_proxy.content) == canon(direct.content)
    assert via_proxy.headers["content-type"] == direct.headers["content-type"]


@pytest.mark.parametrize("stream", [False, True])
def test_tool_calls_pass_through_and_are_logged(proxy: RunningProxy, stream: bool) -> None:
    c = client(proxy)
    args = dict(
        model="triage",
        messages=[{"role": "user", "content": "weather in Paris?"}],
        tools=[WEATHER_TOOL],
    )
    if stream:
        calls: dict[int, dict[str, str]] = {}
        for chunk in c.chat.completions.create(**args, stream=True):  # type: ignore[call-overload]
            for choice in chunk.choices:
                for call in choice.delta.tool_calls or []:
                    slot = calls.setdefault(call.index, {"name": "", "arguments": ""})
                    slot["name"] += call.function.name or ""
                    slot["arguments"] += call.function.arguments or ""
        got = calls[0]
    else:
        message = c.chat.completions.create(**args).choices[0].message  # type: ignore[call-overload]
        got = {
            "name": message.tool_calls[0].function.name,
            "arguments": message.tool_calls[0].function.arguments,
        }
    assert got == {"name": "get_weather", "arguments": '{"city": "Paris"}'}
    [row] = logged(proxy)
    message = json.loads(row["response"])["choices"][0]["message"]
    assert message["tool_calls"][0]["function"]["arguments"] == '{"city": "Paris"}'
    assert row["finish_reason"] == "tool_calls"
    assert json.loads(row["request"])["tools"][0]["function"]["name"] == "get_weather"


def test_response_format_n_and_multimodal_parts_pass_through(
    proxy: RunningProxy, teacher: FakeTeacher
) -> None:
    parts = [
        {"type": "text", "text": "describe"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
    ]
    answer = client(proxy).chat.completions.create(
        model="triage",
        messages=[{"role": "user", "content": parts}],  # type: ignore[list-item]
        response_format={"type": "json_object"},
        n=3,
    )
    assert len(answer.choices) == 3
    assert json.loads(answer.choices[2].message.content or "") == {"echo": "describe"}
    assert teacher.received[-1].body["messages"][0]["content"] == parts
    assert teacher.received[-1].body["response_format"] == {"type": "json_object"}


def test_models_lists_routes_and_unknown_model_is_404(proxy: RunningProxy) -> None:
    c = client(proxy)
    assert [m.id for m in c.models.list()] == ["triage"]
    with pytest.raises(openai.NotFoundError) as err:
        c.chat.completions.create(model="gpt-5", messages=[{"role": "user", "content": "x"}])
    assert "known models: triage" in str(err.value)
    assert logged(proxy) == []


def test_any_model_route_serves_unknown_names(tmp_path: Path, teacher: FakeTeacher) -> None:
    with RunningProxy(proxy_config(tmp_path / "d", teacher, any_model=True)) as running:
        answer = client(running).chat.completions.create(
            model="whatever-name", messages=[{"role": "user", "content": "x"}]
        )
        assert answer.choices[0].message.content == "echo: x"
        [row] = logged(running)
    assert row["route"] == "triage"
    assert json.loads(row["request"])["model"] == "whatever-name"


def test_capture_off_header_serves_but_does_not_log(proxy: RunningProxy) -> None:
    client(proxy).chat.completions.create(
        model="triage",
        messages=[{"role": "user", "content": "private"}],
        extra_headers={"x-apprentice-capture": "off"},
    )
    client(proxy).chat.completions.create(
        model="triage", messages=[{"role": "user", "content": "public"}]
    )
    rows = logged(proxy)
    assert [json.loads(r["request"])["messages"][0]["content"] for r in rows] == ["public"]


def test_litellm_path_answers_in_openai_shape(tmp_path: Path, teacher: FakeTeacher) -> None:
    config = proxy_config(tmp_path / "d", teacher, upstream="litellm")
    with RunningProxy(config) as running:
        c = client(running)
        answer = c.chat.completions.create(
            model="triage", messages=[{"role": "user", "content": "via litellm"}]
        )
        text = "".join(
            chunk.choices[0].delta.content or ""
            for chunk in c.chat.completions.create(
                model="triage",
                messages=[{"role": "user", "content": "streamed via litellm"}],
                stream=True,
            )
            if chunk.choices
        )
        rows = logged(running)
    assert answer.choices[0].message.content == "echo: via litellm"
    assert text == "echo: streamed via litellm"
    assert [r["outcome"] for r in rows] == ["ok", "ok"]
    assert json.loads(rows[1]["response"])["choices"][0]["message"]["content"] == text


def test_metrics_count_requests_tokens_and_cost(proxy: RunningProxy) -> None:
    client(proxy).chat.completions.create(
        model="triage", messages=[{"role": "user", "content": "one two"}]
    )
    httpx.post(f"{proxy.url}/admin/seal", headers={"authorization": "Bearer admin-token-789"})
    text = httpx.get(f"{proxy.url}/metrics").text
    assert 'apprentice_requests_total{outcome="ok",route="triage",served_by="teacher"} 1.0' in text
    assert 'apprentice_tokens_total{kind="prompt",route="triage",served_by="teacher"} 11.0' in text
    assert 'apprentice_teacher_cost_usd_total{route="triage"}' in text
    assert 'apprentice_capture_rows_written_total{table="requests"} 1.0' in text
    assert "apprentice_time_to_first_token_seconds_bucket" in text
    assert httpx.get(f"{proxy.url}/healthz").status_code == 200
    assert httpx.get(f"{proxy.url}/readyz").json() == {"status": "ready"}


def test_teacher_logprobs_captured_for_distillation_but_not_shown(
    tmp_path: Path, teacher: FakeTeacher
) -> None:
    with RunningProxy(proxy_config(tmp_path / "d", teacher, capture_top_logprobs=3)) as running:
        raw = httpx.post(
            f"{running.base_url}/chat/completions",
            json={"model": "triage", "messages": [{"role": "user", "content": "a b"}]},
            headers={"authorization": f"Bearer {CLIENT_KEY}"},
        )
        streamed = httpx.post(
            f"{running.base_url}/chat/completions",
            json={
                "model": "triage",
                "stream": True,
                "messages": [{"role": "user", "content": "c d"}],
            },
            headers={"authorization": f"Bearer {CLIENT_KEY}"},
        )
        rows = logged(running)
    assert "logprobs" not in raw.json()["choices"][0]
    assert b"logprobs" not in streamed.content and b"echo:" in streamed.content
    assert teacher.received[0].body["top_logprobs"] == 3
    for row in rows:
        top = orjson.loads(row["teacher_logprobs"])["content"][0]["top_logprobs"]
        assert len(top) == 3
