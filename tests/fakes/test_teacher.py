"""What the fake teacher does on every surface: routes, records, failures, hooks, latency."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import anthropic
import httpx
import openai
import pytest
from anthropic.types import ModelInfo
from openai.types import Model

from tests.fakes.teacher import Failure, FakeTeacher

OPENAI_POSTS = ["/v1/chat/completions", "/v1/responses", "/v1/completions", "/v1/embeddings"]
Ask = Callable[[openai.OpenAI, anthropic.Anthropic], object]

# One call per endpoint, each as its official client makes it.
ASKS: dict[str, Ask] = {
    "chat": lambda o, a: o.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "hi"}]
    ),
    "responses": lambda o, a: o.responses.create(model="m", input="hi"),
    "responses-stream": lambda o, a: list(o.responses.create(model="m", input="hi", stream=True)),
    "completions": lambda o, a: o.completions.create(model="m", prompt="hi"),
    "embeddings": lambda o, a: o.embeddings.create(model="m", input="hi"),
    "model": lambda o, a: o.models.retrieve("m"),
    "messages": lambda o, a: a.messages.create(
        model="m", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
    ),
}


def test_model_objects_for_any_id(
    openai_client: openai.OpenAI, anthropic_client: anthropic.Anthropic, teacher: FakeTeacher
) -> None:
    raw = openai_client.models.with_raw_response.retrieve("gpt-4o-mini")
    assert Model.model_validate_json(raw.text).model_dump(exclude_none=True) == {
        "id": "gpt-4o-mini",
        "object": "model",
        "created": 1_700_000_000,
        "owned_by": "fake-teacher",
    }
    assert teacher.received[-1].method == "GET"
    # The same path asked by anthropic-python is answered with Anthropic's ModelInfo.
    info = anthropic_client.models.with_raw_response.retrieve("claude-x")
    assert ModelInfo.model_validate(info.http_response.json()).id == "claude-x"


@pytest.mark.parametrize("path", OPENAI_POSTS)
def test_a_body_that_is_not_json_is_openais_400(
    teacher: FakeTeacher, http: httpx.Client, path: str
) -> None:
    response = http.post(f"http://{teacher.host}:{teacher.port}{path}", content=b"{not json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["type"], error["param"], error["code"]) == ("invalid_request_error", None, None)
    assert teacher.received[-1].raw == b"{not json" and teacher.received[-1].body == {}


def test_a_body_that_is_not_json_is_anthropics_400(
    teacher: FakeTeacher, http: httpx.Client
) -> None:
    response = http.post(f"http://{teacher.host}:{teacher.port}/v1/messages", content=b"[1]")
    assert response.status_code == 400
    body = response.json()
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    assert body["request_id"] == response.headers["request-id"]


def test_an_unknown_path_is_a_404_and_still_recorded(
    teacher: FakeTeacher, http: httpx.Client
) -> None:
    response = http.get(f"http://{teacher.host}:{teacher.port}/v1/nothing?x=1")
    assert response.status_code == 404
    assert response.json()["error"]["message"] == "Invalid URL (GET /v1/nothing)"
    assert (teacher.received[-1].method, teacher.received[-1].path) == ("GET", "/v1/nothing?x=1")


def test_a_chunked_request_body_is_read(teacher: FakeTeacher, http: httpx.Client) -> None:
    parts = [b'{"model": "m", ', b'"input": "in pieces"}']
    response = http.post(f"{teacher.base_url}/responses", content=iter(parts))
    assert teacher.received[-1].headers["transfer-encoding"] == "chunked"
    assert response.json()["output"][0]["content"][0]["text"] == "echo: in pieces"


@pytest.mark.parametrize("endpoint", sorted(ASKS))
def test_a_queued_failure_hits_the_next_request_on_every_endpoint(
    openai_client: openai.OpenAI,
    anthropic_client: anthropic.Anthropic,
    teacher: FakeTeacher,
    endpoint: str,
) -> None:
    ask = ASKS[endpoint]
    teacher.fail_next(Failure(503))
    with pytest.raises((openai.APIStatusError, anthropic.APIStatusError)) as failed:
        ask(openai_client, anthropic_client)
    assert failed.value.status_code == 503
    assert "fake failure 503" in failed.value.message
    if endpoint == "messages":
        assert failed.value.body == {
            "type": "error",
            "error": {"type": "api_error", "message": "fake failure 503"},
            "request_id": failed.value.response.headers["request-id"],
        }
    else:
        assert failed.value.body == {
            "message": "fake failure 503",
            "type": "server_error",
            "param": None,
            "code": None,
        }
    ask(openai_client, anthropic_client)  # the next one is answered
    assert not teacher.failures


def test_a_dropped_connection_reaches_the_client(
    openai_client: openai.OpenAI, anthropic_client: anthropic.Anthropic, teacher: FakeTeacher
) -> None:
    teacher.fail_next(Failure(drop_connection=True), Failure(drop_connection=True))
    with pytest.raises(openai.APIConnectionError):
        openai_client.responses.create(model="m", input="hi", stream=True)
    with pytest.raises(anthropic.APIConnectionError):
        ASKS["messages"](openai_client, anthropic_client)


def test_the_model_list_never_takes_a_failure(
    openai_client: openai.OpenAI, teacher: FakeTeacher
) -> None:
    teacher.fail_next(Failure(500))
    assert list(openai_client.models.list()) == []  # a health probe, as it always was
    with pytest.raises(openai.InternalServerError):
        openai_client.responses.create(model="m", input="hi")


def test_answer_and_mutate_hooks_reach_every_surface(
    openai_client: openai.OpenAI, anthropic_client: anthropic.Anthropic, teacher: FakeTeacher
) -> None:
    seen: list[dict[str, Any]] = []

    def answer(payload: dict[str, Any]) -> str:
        seen.append(payload)
        return "from the hook"

    teacher.answer = answer
    assert openai_client.responses.create(model="m", input="x").output_text == "from the hook"
    message = ASKS["messages"](openai_client, anthropic_client)
    assert message.content[0].to_dict()["text"] == "from the hook"
    completion = openai_client.completions.create(model="m", prompt="x")
    assert completion.choices[0].text == "from the hook"
    assert [p["model"] for p in seen] == ["m", "m", "m"]
    teacher.mutate = lambda answer: answer | {"model": "mutated"}
    for name in ("chat", "responses", "completions", "embeddings", "messages"):
        assert ASKS[name](openai_client, anthropic_client).model == "mutated"


def test_latency_delays_every_answer(http: httpx.Client) -> None:
    with FakeTeacher(latency_s=0.2) as slow:
        client = openai.OpenAI(base_url=slow.base_url, api_key="k", http_client=http)
        started = time.monotonic()
        client.embeddings.create(model="m", input="hi")
        assert time.monotonic() - started >= 0.2


def test_whole_event_writes_parse_like_split_ones(http: httpx.Client) -> None:
    with FakeTeacher(split_seed=None) as whole:
        client = openai.OpenAI(base_url=whole.base_url, api_key="k", http_client=http)
        events = list(client.responses.create(model="m", input="a b", stream=True))
    assert events[-1].response.output_text == "echo: a b"
