"""Every surface a base URL sees, through the proxy with the official clients: the Responses
API, Anthropic Messages, embeddings, legacy completions, model look-ups, Azure-style paths.
Each answer is compared with the same call made directly to the fake provider, and the rows
are read back from the sealed segments."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest
from pydantic import BaseModel

from curation.job import run_curation
from curation.settings import CurationSettings
from logbook.segments import open_segments
from tests.conftest import CLIENT_KEY, TEACHER_KEY, RunningProxy, proxy_config
from tests.fakes.teacher import Failure, FakeTeacher

WEATHER = {"type": "function", "name": "get_weather", "description": "Weather of a city.",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                          "required": ["city"]}}  # fmt: skip
ANTHROPIC_WEATHER = {"name": "get_weather", "description": "Weather of a city.",
                     "input_schema": WEATHER["parameters"]}  # fmt: skip


class Echo(BaseModel):
    echo: str


def with_teacher(data_dir: Path, fake: FakeTeacher, teacher: str, **route: Any) -> Any:
    """The test route with another teacher model string (and other route settings)."""
    config = proxy_config(data_dir, fake, **route)
    changed = config.routes[0].model_copy(update={"teacher": teacher})
    return config.model_copy(update={"routes": [changed]})


def rows(data_dir: Path) -> list[dict[str, Any]]:
    cur = open_segments(data_dir).execute("SELECT * FROM requests ORDER BY seq")
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def oai(base_url: str, key: str = CLIENT_KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=base_url, api_key=key, max_retries=0, timeout=30)


def ant(root: str, key: str = CLIENT_KEY) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=root, api_key=key, max_retries=0, timeout=30)


@pytest.fixture
def pair(tmp_path: Path, teacher: FakeTeacher) -> Any:
    with RunningProxy(proxy_config(tmp_path / "data", teacher)) as proxy:
        yield proxy, teacher


def test_the_responses_api_passes_through_plain_streamed_with_tools_and_structured(
    pair: Any,
) -> None:
    proxy, teacher = pair
    via, direct = oai(proxy.base_url), oai(teacher.base_url, TEACHER_KEY)
    plain = via.responses.create(model="triage", input="hello there")
    assert plain.output_text == direct.responses.create(model="x", input="hello there").output_text
    assert plain.output_text == "echo: hello there"
    with via.responses.stream(model="triage", input="stream me") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == final.output_text == "echo: stream me"
    called = via.responses.create(model="triage", input="weather in Paris?", tools=[WEATHER])
    call = next(item for item in called.output if item.type == "function_call")
    assert call.name == "get_weather" and json.loads(call.arguments) == {"city": "Paris"}
    parsed = via.responses.parse(model="triage", input="structured", text_format=Echo)
    assert parsed.output_parsed == Echo(echo="structured")
    assert teacher.received[0].body["model"] == "fake-teacher-1"  # the route's teacher model
    proxy.stop()
    logged = rows(proxy.config.data_dir)
    assert [r["endpoint"] for r in logged] == ["responses"] * 4
    assert all(r["served_by"] == "teacher" and r["status"] == 200 for r in logged)
    assert logged[1]["stream"] and not logged[1]["truncated"]
    assert json.loads(logged[1]["response"])["output"][0]["content"][0]["text"] == (
        "echo: stream me"
    )  # the stream reassembled into the final response
    assert all(r["prompt_tokens"] and not r["usage_estimated"] for r in logged)


def test_embeddings_completions_and_model_lookups_pass_through(pair: Any) -> None:
    proxy, teacher = pair
    via, direct = oai(proxy.base_url), oai(teacher.base_url, TEACHER_KEY)
    for fmt in ("float", "base64"):
        got = via.embeddings.create(model="triage", input=["a", "b"], encoding_format=fmt)
        want = direct.embeddings.create(model="fake-teacher-1", input=["a", "b"],
                                        encoding_format=fmt)  # fmt: skip
        assert [d.embedding for d in got.data] == [d.embedding for d in want.data]
    legacy = via.completions.create(model="triage", prompt="say hi")
    assert legacy.choices[0].text == "echo: say hi"
    streamed = "".join(c.choices[0].text for c in via.completions.create(
        model="triage", prompt="say more", stream=True) if c.choices)  # fmt: skip
    assert streamed == "echo: say more"
    assert via.models.retrieve("triage").id == "triage"
    proxy.stop()
    logged = rows(proxy.config.data_dir)
    assert [r["endpoint"] for r in logged] == ["embeddings", "embeddings", "completions",
                                              "completions"]  # fmt: skip
    assert all(r["prompt_tokens"] for r in logged) and logged[0]["completion_tokens"] == 0
    assert json.loads(logged[3]["response"])["choices"][0]["text"] == "echo: say more"


def test_stored_responses_are_fetched_and_deleted_through_the_proxy(pair: Any) -> None:
    proxy, _ = pair
    via = oai(proxy.base_url)
    created = via.responses.create(model="triage", input="keep me", store=True)
    assert via.responses.retrieve(created.id).output_text == "echo: keep me"
    via.responses.delete(created.id)
    with pytest.raises(openai.NotFoundError):
        via.responses.retrieve(created.id)
    proxy.stop()
    assert [r["endpoint"] for r in rows(proxy.config.data_dir)] == [
        "responses", "responses/{id}", "responses/{id}", "responses/{id}"
    ]  # fmt: skip


def test_anthropic_messages_pass_through_to_an_anthropic_teacher(
    tmp_path: Path, teacher: FakeTeacher
) -> None:
    config = with_teacher(tmp_path / "data", teacher, "anthropic/claude-fake")
    with RunningProxy(config) as proxy:
        via, direct = ant(proxy.url), ant(teacher.base_url.removesuffix("/v1"), TEACHER_KEY)
        ask = {"max_tokens": 64, "messages": [{"role": "user", "content": "hello claude"}]}
        plain = via.messages.create(model="triage", **ask)
        assert plain.content == direct.messages.create(model="x", **ask).content
        with via.messages.stream(model="triage", **ask) as stream:
            final = stream.get_final_message()
        assert [b.text for b in final.content] == [b.text for b in plain.content]  # type: ignore[union-attr]
        assert plain.content[0].text == "echo: hello claude"  # type: ignore[union-attr]
        used = via.messages.create(
            model="triage", max_tokens=64, tools=[ANTHROPIC_WEATHER],
            messages=[{"role": "user", "content": "weather in Paris?"}],
        )  # fmt: skip
        assert used.stop_reason == "tool_use" and used.content[-1].input == {"city": "Paris"}
        sent = teacher.received[0]
        assert sent.path.endswith("/v1/messages") and sent.headers["x-api-key"] == TEACHER_KEY
        assert sent.body["model"] == "claude-fake"
        missing = httpx.post(f"{proxy.url}/v1/messages", headers={"x-api-key": CLIENT_KEY},
                             json={"model": "triage", "messages": ask["messages"]})  # fmt: skip
        assert missing.status_code == 400  # in Anthropic's shape, as its SDK reads errors
        assert missing.json()["type"] == "error"
        assert missing.json()["error"]["type"] == "invalid_request_error"
        assert "max_tokens" in missing.json()["error"]["message"]
        with pytest.raises(anthropic.AuthenticationError):
            ant(proxy.url, "sk-wrong-key-0000").messages.create(model="triage", **ask)
    logged = rows(config.data_dir)
    assert [r["endpoint"] for r in logged] == ["messages"] * 3
    assert json.loads(logged[1]["response"])["content"][0]["text"] == "echo: hello claude"


def test_anthropic_messages_are_translated_for_an_openai_teacher(pair: Any) -> None:
    proxy, teacher = pair
    via = ant(proxy.url)
    ask = {"max_tokens": 64, "system": "Be brief.",
           "messages": [{"role": "user", "content": "hello from anthropic"}]}  # fmt: skip
    plain = via.messages.create(model="triage", **ask)
    assert plain.content[0].text == "echo: hello from anthropic"
    assert plain.stop_reason == "end_turn" and plain.usage.input_tokens > 0
    with via.messages.stream(model="triage", **ask) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == final.content[0].text == "echo: hello from anthropic"
    used = via.messages.create(
        model="triage", max_tokens=64, tools=[ANTHROPIC_WEATHER],
        messages=[{"role": "user", "content": "weather in Paris?"}],
    )  # fmt: skip
    block = next(b for b in used.content if b.type == "tool_use")
    assert used.stop_reason == "tool_use" and block.input == {"city": "Paris"}
    sent = teacher.received[0]
    assert sent.path.endswith("/chat/completions")
    assert sent.body["messages"][0] == {"role": "system", "content": "Be brief."}
    proxy.stop()
    assert [r["endpoint"] for r in rows(proxy.config.data_dir)] == ["messages"] * 3


def test_the_responses_api_is_translated_for_a_litellm_teacher(
    tmp_path: Path, teacher: FakeTeacher
) -> None:
    # An Anthropic teacher reached through litellm (chat), answering the Responses API.
    config = with_teacher(tmp_path / "data", teacher, "anthropic/claude-fake", upstream="litellm")
    with RunningProxy(config) as proxy:
        via = oai(proxy.base_url)
        assert via.responses.create(model="triage", input="via litellm").output_text == (
            "echo: via litellm"
        )
        with via.responses.stream(model="triage", input="streamed via litellm") as stream:
            final = stream.get_final_response()
        assert final.output_text == "echo: streamed via litellm"
        with pytest.raises(openai.BadRequestError, match="previous_response_id"):
            via.responses.create(model="triage", input="x", previous_response_id="resp_1")
    assert [r["endpoint"] for r in rows(config.data_dir)] == ["responses"] * 2


def test_curation_learns_from_chat_responses_and_messages_alike(pair: Any) -> None:
    proxy, _ = pair
    via_oai, via_ant = oai(proxy.base_url), ant(proxy.url)
    for i in range(12):
        chat = [{"role": "user", "content": f"chat question {i}"}]
        via_oai.chat.completions.create(model="triage", messages=chat)
        via_oai.responses.create(model="triage", input=f"responses question {i}")
        messages = [{"role": "user", "content": f"messages question {i}"}]
        via_ant.messages.create(model="triage", max_tokens=32, messages=messages)
    via_oai.embeddings.create(model="triage", input="not a pair")
    proxy.stop()
    settings = CurationSettings(cluster_cap_min_rows=0, eval_min_rows=1, dedupe_threshold=0.99)
    result = run_curation(proxy.config.data_dir, "triage", settings)
    select = next(s for s in result.stages if s.name == "select")
    assert select.rows_out == 36 and select.dropped == {"not_a_pair": 1}
    kept = result.counts["train"] + result.counts["eval"]
    assert kept == 36, result.stages


def test_azure_style_paths_reach_the_same_handlers(pair: Any) -> None:
    proxy, _ = pair
    azure = openai.AzureOpenAI(azure_endpoint=proxy.url, api_key=CLIENT_KEY,
                               api_version="2024-10-21", max_retries=0)  # fmt: skip
    answer = azure.chat.completions.create(
        model="triage", messages=[{"role": "user", "content": "from azure"}]
    )
    assert answer.choices[0].message.content == "echo: from azure"
    proxy.stop()
    assert [r["endpoint"] for r in rows(proxy.config.data_dir)] == ["chat/completions"]


def test_a_failing_teacher_is_tried_three_times_not_nine(pair: Any) -> None:
    proxy, teacher = pair
    teacher.fail_next(*[Failure(500)] * 3)
    sdk = openai.OpenAI(base_url=proxy.base_url, api_key=CLIENT_KEY, max_retries=2, timeout=30)
    with pytest.raises(openai.InternalServerError) as failed:
        sdk.chat.completions.create(model="triage", messages=[{"role": "user", "content": "x"}])
    assert failed.value.response.headers["x-should-retry"] == "false"
    assert len(teacher.received) == 3  # the proxy's 1 + 2 tries; the SDK did not retry


def test_a_client_that_gives_up_is_logged_as_disconnected(tmp_path: Path) -> None:
    with FakeTeacher(latency_s=2.0) as slow:
        config = proxy_config(tmp_path / "data", slow)
        with RunningProxy(config) as proxy, pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{proxy.base_url}/chat/completions", timeout=0.3,
                       headers={"authorization": f"Bearer {CLIENT_KEY}"},
                       json={"model": "triage", "messages": [{"role": "user",
                                                              "content": "slow"}]})  # fmt: skip
    [row] = rows(config.data_dir)
    assert row["outcome"] == "client_disconnected" and row["latency_ms"] < 1500
