"""What a new user trips over, with the official clients: an unexpected method, a base URL one
level off, Azure's Responses paths, errors the proxy answers itself (not to be retried), and
a litellm teacher's failure without litellm's internals."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.conftest import CLIENT_KEY, TEACHER_KEY, RunningProxy
from tests.fakes.teacher import Failure, FakeTeacher
from tests.proxy.test_surfaces import ant, oai, pair, rows, with_teacher

__all__ = ["pair"]  # the fixture, used by name
AUTH = {"authorization": f"Bearer {CLIENT_KEY}"}
HELLO = [{"role": "user", "content": "hello"}]


def counted(sent: list[httpx.Request]) -> httpx.Client:
    """An httpx client for the SDKs that records every request they send (retries too)."""
    return httpx.Client(event_hooks={"request": [sent.append]}, timeout=30)


def test_an_unexpected_method_is_a_405_at_once_on_every_surface(pair: Any) -> None:
    proxy, teacher = pair
    for path, allowed in [("/v1/chat/completions", "GET, POST"), ("/v1/responses", "POST"),
                          ("/v1/messages", "POST"), ("/v1/messages/count_tokens", "POST"),
                          ("/v1/embeddings", "DELETE, GET, HEAD, PATCH, POST, PUT")]:  # fmt: skip
        for method in ("TRACE", "OPTIONS", "CONNECT"):
            started = time.monotonic()
            answer = httpx.request(method, f"{proxy.url}{path}", headers=AUTH, timeout=5,
                                   json={"model": "triage", "messages": HELLO})  # fmt: skip
            assert time.monotonic() - started < 3
            assert answer.status_code == 405, (method, path, answer.text)
            assert answer.headers["allow"] == allowed
            assert answer.headers["x-should-retry"] == "false"
            body = answer.json()
            error = body["error"]
            assert f"{method} is not allowed on {path}" in error["message"]
            assert body.get("type") == "error" if "messages" in path else error["code"]
    for method in ("PUT", "DELETE", "PATCH"):
        wrong = httpx.request(method, f"{proxy.url}/v1/messages", headers=AUTH, json={})
        assert wrong.status_code == 405 and wrong.json()["type"] == "error"
    feedback = httpx.delete(f"{proxy.base_url}/feedback", headers=AUTH)
    assert feedback.status_code == 405 and feedback.headers["allow"] == "POST"
    assert teacher.received == []  # nothing was forwarded


def test_errors_the_proxy_answers_itself_are_not_retried_by_the_sdks(pair: Any) -> None:
    proxy, teacher = pair
    cases: list[tuple[str, dict[str, Any], type[openai.APIError]]] = [
        (proxy.base_url, {"model": "nope"}, openai.NotFoundError),  # unknown model
        (f"{proxy.url}/v2", {"model": "triage"}, openai.InternalServerError),  # 501
        (proxy.base_url, {"model": "triage", "n": 0}, openai.BadRequestError),
    ]
    for base_url, ask, kind in cases:
        sent: list[httpx.Request] = []
        sdk = openai.OpenAI(base_url=base_url, api_key=CLIENT_KEY, max_retries=2,
                            http_client=counted(sent))  # fmt: skip
        with pytest.raises(kind) as failed:
            sdk.chat.completions.create(messages=HELLO, **ask)
        assert failed.value.response.headers["x-should-retry"] == "false", base_url
        assert len(sent) == 1, (base_url, ask)  # no retry of an answer that cannot change
    sent = []
    wrong_key = openai.OpenAI(base_url=proxy.base_url, api_key="sk-wrong-key-0000",
                              max_retries=2, http_client=counted(sent))  # fmt: skip
    with pytest.raises(openai.AuthenticationError) as failed:
        wrong_key.chat.completions.create(model="triage", messages=HELLO)  # type: ignore[arg-type]
    assert failed.value.response.headers["x-should-retry"] == "false" and len(sent) == 1
    assert teacher.received == []


def test_a_litellm_teacher_fails_without_litellm_internals(
    tmp_path: Path, teacher: FakeTeacher, capsys: pytest.CaptureFixture[str]
) -> None:
    config = with_teacher(tmp_path / "data", teacher, "anthropic/claude-fake")
    with RunningProxy(config) as proxy:
        sdk = oai(proxy.base_url)
        for status, kind in [(500, openai.InternalServerError), (401, openai.AuthenticationError),
                             (400, openai.BadRequestError)]:  # fmt: skip
            teacher.failures.clear()  # litellm retries some statuses and not others
            teacher.fail_next(*[Failure(status)] * 10)
            with pytest.raises(kind) as failed:
                sdk.chat.completions.create(model="triage", messages=HELLO)  # type: ignore[arg-type]
            message = failed.value.message
            assert f"fake failure {status}" in message, message
            assert "The teacher of route triage" in message
            for internal in ("litellm", "LiteLLM", "Handle with", "Exception -", "request_id"):
                assert internal not in message, message
            assert failed.value.response.headers["x-should-retry"] == "false"
        teacher.failures.clear()
        teacher.cut_streams_after = 4  # litellm's error mid-stream: an error event, not a reset
        with pytest.raises(openai.APIError, match="stream broke off"):
            for _ in sdk.chat.completions.create(model="triage", messages=HELLO, stream=True):  # type: ignore[arg-type]
                pass
    assert "docs.litellm.ai" not in capsys.readouterr().out  # no litellm banner in the log


def test_a_base_url_one_level_off_says_which_base_url_to_use(pair: Any) -> None:
    proxy, teacher = pair
    no_v1 = oai(proxy.url)  # an OpenAI client's base URL ends in /v1
    with pytest.raises(openai.APIStatusError) as failed:
        no_v1.chat.completions.create(model="triage", messages=HELLO)  # type: ignore[arg-type]
    assert f"base_url={proxy.url}/v1" in failed.value.message
    assert failed.value.response.headers["x-should-retry"] == "false"
    with pytest.raises(openai.APIStatusError) as failed:
        no_v1.responses.create(model="triage", input="hello")
    assert f"base_url={proxy.url}/v1" in failed.value.message
    with pytest.raises(openai.APIStatusError) as failed:
        no_v1.embeddings.create(model="triage", input="hello")
    assert f"base_url={proxy.url}/v1" in failed.value.message
    twice = oai(f"{proxy.base_url}/v1")
    with pytest.raises(openai.APIStatusError) as failed:
        twice.chat.completions.create(model="triage", messages=HELLO)  # type: ignore[arg-type]
    assert f"base_url={proxy.url}/v1 " in failed.value.message
    with_v1 = ant(proxy.base_url)  # anthropic-python adds /v1 itself
    with pytest.raises(anthropic.APIStatusError) as ant_failed:
        with_v1.messages.create(model="triage", max_tokens=16, messages=HELLO)  # type: ignore[list-item]
    assert f"base_url={proxy.url} " in ant_failed.value.message
    assert ant_failed.value.body["type"] == "error"  # type: ignore[index]
    with pytest.raises(anthropic.APIStatusError) as ant_failed:
        with_v1.messages.count_tokens(model="triage", messages=HELLO)  # type: ignore[list-item]
    assert f"base_url={proxy.url} " in ant_failed.value.message
    assert teacher.received == []


def test_azure_responses_paths_reach_the_responses_handler(pair: Any) -> None:
    proxy, teacher = pair
    azure = openai.AzureOpenAI(azure_endpoint=proxy.url, api_key=CLIENT_KEY,
                               api_version="2025-03-01-preview", max_retries=0)  # fmt: skip
    assert azure.responses.create(model="triage", input="from azure").output_text == (
        "echo: from azure"
    )
    v1 = openai.OpenAI(base_url=f"{proxy.url}/openai/v1", api_key=CLIENT_KEY, max_retries=0)
    assert v1.responses.create(model="triage", input="azure v1").output_text == "echo: azure v1"
    assert v1.chat.completions.create(model="triage", messages=HELLO).choices[0].message.content  # type: ignore[arg-type]
    assert all("api-version" not in r.path for r in teacher.received)
    proxy.stop()
    endpoints = [r["endpoint"] for r in rows(proxy.config.data_dir)]
    assert endpoints == ["responses", "responses", "chat/completions"]


def test_count_tokens_passes_through_to_an_anthropic_teacher(
    tmp_path: Path, teacher: FakeTeacher
) -> None:
    config = with_teacher(tmp_path / "data", teacher, "anthropic/claude-fake")
    words = [{"role": "user", "content": "count these words"}]
    ask: dict[str, Any] = {"system": "Be brief.", "messages": words}
    with RunningProxy(config) as proxy:
        direct = ant(teacher.base_url.removesuffix("/v1"), TEACHER_KEY)
        counted = ant(proxy.url).messages.count_tokens(model="triage", **ask)
        assert counted.input_tokens == direct.messages.count_tokens(model="x", **ask).input_tokens
        assert counted.input_tokens > 0
        sent = teacher.received[0]
        assert sent.path.endswith("/v1/messages/count_tokens")
        assert sent.headers["x-api-key"] == TEACHER_KEY and sent.body["model"] == "claude-fake"
        with pytest.raises(anthropic.BadRequestError, match="messages"):
            ant(proxy.url).messages.count_tokens(model="triage", messages=[])
    [row] = rows(config.data_dir)
    assert row["endpoint"] == "messages/count_tokens" and row["status"] == 200
    assert row["prompt_tokens"] == counted.input_tokens and row["cost_usd"] is None


def test_count_tokens_is_answered_by_the_proxy_on_other_routes(pair: Any) -> None:
    import litellm

    proxy, teacher = pair
    via = ant(proxy.url)
    short = via.messages.count_tokens(
        model="triage", system="Be brief.", messages=[{"role": "user", "content": "hello there"}]
    )
    expected = litellm.token_counter(
        model="openai/fake-teacher-1",
        messages=[{"role": "system", "content": "Be brief."},
                  {"role": "user", "content": "hello there"}],
    )  # fmt: skip
    assert short.input_tokens == expected
    long = via.messages.count_tokens(
        model="triage", messages=[{"role": "user", "content": "hello there " * 50}]
    )
    assert long.input_tokens > short.input_tokens + 50
    with pytest.raises(anthropic.NotFoundError, match="nope"):
        via.messages.count_tokens(model="nope", messages=[{"role": "user", "content": "x"}])
    assert teacher.received == []  # counted here, not by the teacher
    proxy.stop()
    logged = rows(proxy.config.data_dir)
    assert [(r["endpoint"], r["served_by"]) for r in logged] == [
        ("messages/count_tokens", "proxy"), ("messages/count_tokens", "proxy")
    ]  # fmt: skip
