from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import openai
import pytest

from demo import task
from demo.teacher import SimulatedTeacher, tokenize

MESSAGE = "My standing desk arrived broken. Order A12345. This is urgent."


@pytest.fixture
def teacher() -> Iterator[SimulatedTeacher]:
    with SimulatedTeacher(latency_s=0, ttft_s=0, per_token_s=0) as t:
        yield t


@pytest.fixture
def client(teacher: SimulatedTeacher) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=teacher.base_url, api_key="k", max_retries=0) as c:
        yield c


def test_base_url_ends_in_v1(teacher: SimulatedTeacher) -> None:
    assert teacher.base_url.startswith("http://127.0.0.1:")
    assert teacher.base_url.endswith("/v1")


def test_plain_completion_answers_by_rule_with_usage(
    teacher: SimulatedTeacher, client: openai.OpenAI
) -> None:
    r = client.chat.completions.create(model="sim-teacher-1", messages=task.chat_messages(MESSAGE))
    assert r.choices[0].message.content == task.teacher_answer(MESSAGE)
    assert r.choices[0].message.content == '{"intent":"damaged_item","priority":"high"}'
    assert r.choices[0].finish_reason == "stop"
    assert r.usage is not None
    assert r.usage.completion_tokens == len(tokenize(task.teacher_answer(MESSAGE)))
    assert r.usage.prompt_tokens > 10
    assert teacher.requests_served == 1


def test_streaming_reassembles_the_answer_and_ends_with_usage(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="sim-teacher-1",
        messages=task.chat_messages(MESSAGE),
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == task.teacher_answer(MESSAGE)
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 5
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == len(tokenize(text))
    assert all(c.usage is None for c in chunks[:-1])


def test_stream_without_include_usage_has_no_usage_chunk(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model="sim-teacher-1", messages=task.chat_messages(MESSAGE), stream=True
        )
    )
    assert all(c.choices for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_logprobs_are_well_formed(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(
        model="sim-teacher-1", messages=task.chat_messages(MESSAGE), logprobs=True, top_logprobs=3
    )
    lp = r.choices[0].logprobs
    assert lp is not None and lp.content is not None
    assert "".join(t.token for t in lp.content) == r.choices[0].message.content
    for t in lp.content:
        assert len(t.top_logprobs) == 3
        assert t.top_logprobs[0].token == t.token
        assert len({a.token for a in t.top_logprobs}) == 3
        assert all(a.logprob <= t.logprob < 0 for a in t.top_logprobs)


def test_streamed_logprobs(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model="sim-teacher-1",
            messages=task.chat_messages(MESSAGE),
            stream=True,
            logprobs=True,
            top_logprobs=2,
        )
    )
    tokens = [
        t.token
        for c in chunks
        if c.choices and c.choices[0].logprobs and c.choices[0].logprobs.content
        for t in c.choices[0].logprobs.content
    ]
    assert "".join(tokens) == task.teacher_answer(MESSAGE)


def test_models_lists_the_served_model(client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list()] == ["sim-teacher-1"]


def test_missing_or_empty_messages_get_an_openai_400(
    teacher: SimulatedTeacher, client: openai.OpenAI
) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="sim-teacher-1", messages=[])
    assert err.value.code == "invalid_value"
    assert err.value.param == "messages"
    r = httpx.post(f"{teacher.base_url}/chat/completions", json={"model": "sim-teacher-1"})
    assert r.status_code == 400
    assert r.json()["error"]["type"] == "invalid_request_error"
    assert teacher.requests_served == 0


def test_unknown_model_gets_an_openai_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as err:
        client.chat.completions.create(model="gpt-5", messages=task.chat_messages(MESSAGE))
    assert err.value.code == "model_not_found"


def test_bad_json_and_unknown_path(teacher: SimulatedTeacher) -> None:
    r = httpx.post(f"{teacher.base_url}/chat/completions", content=b"{nope")
    assert r.status_code == 400
    assert httpx.get(f"{teacher.base_url}/embeddings").status_code == 404


def test_simulated_latency_applies() -> None:
    with SimulatedTeacher(latency_s=0.2, ttft_s=0.15, per_token_s=0.0) as t:
        c = openai.OpenAI(base_url=t.base_url, api_key="k", max_retries=0)
        t0 = time.monotonic()
        c.chat.completions.create(model="sim-teacher-1", messages=task.chat_messages(MESSAGE))
        assert time.monotonic() - t0 >= 0.2
        t0 = time.monotonic()
        stream = c.chat.completions.create(
            model="sim-teacher-1", messages=task.chat_messages(MESSAGE), stream=True
        )
        first_token = next(x for x in stream if x.choices and x.choices[0].delta.content)
        assert first_token is not None
        assert time.monotonic() - t0 >= 0.15
        c.close()


def test_price_is_declared() -> None:
    t = SimulatedTeacher()
    assert t.input_usd_per_mtok > 0
    assert t.output_usd_per_mtok > t.input_usd_per_mtok


def test_stop_releases_the_port() -> None:
    t = SimulatedTeacher(latency_s=0)
    with t:
        url = t.base_url
        assert httpx.get(f"{url}/models").status_code == 200
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/models", timeout=2)
