"""Anthropic Messages on the fake teacher, through anthropic-python's `client.messages`."""

from __future__ import annotations

import json
from typing import Any

import anthropic
import pytest
from anthropic.types import Message, RawMessageStreamEvent, ToolUseBlock

from tests.fakes.strict import by_type, event_data
from tests.fakes.teacher import Failure, FakeTeacher

EVENTS = by_type(RawMessageStreamEvent)
WEATHER = {
    "name": "get_weather",
    "description": "The weather in a city.",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}
HELLO: dict[str, Any] = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 100,
    "messages": [{"role": "user", "content": "hello there"}],
}
ASK_WEATHER: dict[str, Any] = HELLO | {
    "messages": [{"role": "user", "content": "what is the weather in Paris?"}],
    "tools": [WEATHER],
}


def blocks(message: Message) -> list[dict[str, Any]]:
    return [b.to_dict() for b in message.content]


def test_a_plain_message_is_a_whole_message(
    anthropic_client: anthropic.Anthropic, teacher: FakeTeacher
) -> None:
    raw = anthropic_client.messages.with_raw_response.create(**HELLO)
    data = raw.http_response.json()
    Message.model_validate(data)  # every field the SDK's model requires, with its type
    assert data["id"].startswith("msg_")
    assert (data["type"], data["role"], data["model"]) == ("message", "assistant", "fake-teacher-1")
    assert data["content"] == [{"type": "text", "text": "echo: hello there"}]
    assert (data["stop_reason"], data["stop_sequence"]) == ("end_turn", None)
    assert (data["usage"]["input_tokens"], data["usage"]["output_tokens"]) == (2, 3)
    assert raw.headers["request-id"].startswith("req_")
    sent = teacher.received[-1]
    assert (sent.method, sent.path) == ("POST", "/v1/messages")
    assert "anthropic-version" in sent.headers
    # Older anthropic-python sends the key as x-api-key; 2.x as a bearer token. Either arrives.
    key = sent.headers.get("x-api-key") or sent.headers["authorization"].removeprefix("Bearer ")
    assert key == "sk-ant-test"


def test_system_blocks_and_content_blocks_are_read(anthropic_client: anthropic.Anthropic) -> None:
    message = anthropic_client.messages.create(
        model="claude-sonnet-4-5",
        max_tokens=100,
        system=[{"type": "text", "text": "be brief"}],
        messages=[
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": [{"type": "text", "text": "ok"}]},
            {
                "role": "user",
                "content": [
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"},
                    },
                    {"type": "text", "text": "second"},
                ],
            },
        ],
    )
    assert blocks(message) == [{"type": "text", "text": "echo: second"}]
    assert message.usage.input_tokens == 5  # a word a token: system and every message


def test_the_stream_helper_builds_the_plain_message(anthropic_client: anthropic.Anthropic) -> None:
    plain = anthropic_client.messages.create(**HELLO)
    with anthropic_client.messages.stream(**HELLO) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "echo: hello there"
    assert blocks(final) == blocks(plain)
    assert (final.stop_reason, final.usage.to_dict()) == (plain.stop_reason, plain.usage.to_dict())


def test_a_raw_stream_is_anthropics_named_events(anthropic_client: anthropic.Anthropic) -> None:
    with anthropic_client.messages.with_streaming_response.create(**HELLO, stream=True) as raw:
        assert raw.headers["content-type"] == "text/event-stream"
        lines = list(raw.iter_lines())
    named = event_data(lines)
    assert [name for name, _ in named] == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert all(name == data["type"] for name, data in named)
    for name, data in named:
        if name != "ping":  # the SDK skips pings; it has no model for them
            EVENTS[data["type"]].model_validate(data)
    start = named[0][1]["message"]
    assert (start["content"], start["stop_reason"], start["usage"]["output_tokens"]) == (
        [],
        None,
        1,
    )
    texts = [d["delta"]["text"] for n, d in named if n == "content_block_delta"]
    assert texts == ["echo:", " hello", " there"]
    assert named[-2][1]["delta"]["stop_reason"] == "end_turn"
    assert named[-2][1]["usage"] == {"output_tokens": 3}


def test_a_tool_is_used_when_the_user_asks_for_weather(
    anthropic_client: anthropic.Anthropic,
) -> None:
    raw = anthropic_client.messages.with_raw_response.create(**ASK_WEATHER)
    Message.model_validate(raw.http_response.json())
    message = raw.parse()
    (use,) = message.content
    assert isinstance(use, ToolUseBlock)
    assert (use.name, use.input, message.stop_reason) == (
        "get_weather",
        {"city": "Paris"},
        "tool_use",
    )
    assert use.id.startswith("toolu_")


def test_a_streamed_tool_use_equals_the_plain_one(anthropic_client: anthropic.Anthropic) -> None:
    plain = anthropic_client.messages.create(**ASK_WEATHER)
    with anthropic_client.messages.stream(**ASK_WEATHER) as stream:
        final = stream.get_final_message()
    assert blocks(final) == blocks(plain) and final.stop_reason == "tool_use"
    with anthropic_client.messages.with_streaming_response.create(
        **ASK_WEATHER, stream=True
    ) as raw:
        named = event_data(list(raw.iter_lines()))
    assert named[1][1]["content_block"]["input"] == {}
    pieces = [d["delta"]["partial_json"] for n, d in named if n == "content_block_delta"]
    assert pieces[0] == "" and json.loads("".join(pieces)) == {"city": "Paris"}


def test_a_tool_result_is_answered(anthropic_client: anthropic.Anthropic) -> None:
    first = anthropic_client.messages.create(**ASK_WEATHER)
    use = first.content[0]
    assert isinstance(use, ToolUseBlock)
    result = {"type": "tool_result", "tool_use_id": use.id, "content": "sunny, 21C"}
    then = anthropic_client.messages.create(
        **ASK_WEATHER
        | {
            "messages": [
                *ASK_WEATHER["messages"],
                {"role": "assistant", "content": [use.to_dict()]},
                {"role": "user", "content": [result]},
            ]
        }
    )
    assert blocks(then) == [{"type": "text", "text": "echo: sunny, 21C"}]


def test_tool_choice_none_answers_in_text(anthropic_client: anthropic.Anthropic) -> None:
    message = anthropic_client.messages.create(**ASK_WEATHER, tool_choice={"type": "none"})
    assert message.content[0].type == "text" and message.stop_reason == "end_turn"


def test_max_tokens_cuts_the_text(anthropic_client: anthropic.Anthropic) -> None:
    message = anthropic_client.messages.create(**HELLO | {"max_tokens": 2})
    assert blocks(message) == [{"type": "text", "text": "echo: hello"}]
    assert (message.stop_reason, message.usage.output_tokens) == ("max_tokens", 2)


def test_a_json_schema_output_format_answers_json(anthropic_client: anthropic.Anthropic) -> None:
    schema = {"type": "object", "properties": {"echo": {"type": "string"}}}
    message = anthropic_client.messages.create(
        **HELLO, output_config={"format": {"type": "json_schema", "schema": schema}}
    )
    assert json.loads(message.content[0].to_dict()["text"]) == {"echo": "hello there"}


def test_a_missing_max_tokens_is_the_sdks_bad_request(
    anthropic_client: anthropic.Anthropic,
) -> None:
    # messages.create will not send without max_tokens; its generic post will, as a proxy might.
    body = {"model": "claude-sonnet-4-5", "messages": HELLO["messages"]}
    with pytest.raises(anthropic.BadRequestError) as refused:
        anthropic_client.post("/v1/messages", body=body, cast_to=Message)
    assert refused.value.status_code == 400
    error = refused.value.body
    assert isinstance(error, dict) and error["type"] == "error"
    assert error["error"] == {
        "type": "invalid_request_error",
        "message": "max_tokens: Field required",
    }
    assert error["request_id"] == refused.value.request_id


@pytest.mark.parametrize(
    ("status", "error_class", "kind"),
    [
        (429, anthropic.RateLimitError, "rate_limit_error"),
        (500, anthropic.InternalServerError, "api_error"),
        (529, anthropic.InternalServerError, "overloaded_error"),
    ],
)
def test_failures_are_in_anthropics_shape(
    anthropic_client: anthropic.Anthropic,
    teacher: FakeTeacher,
    status: int,
    error_class: type[anthropic.APIStatusError],
    kind: str,
) -> None:
    teacher.fail_next(Failure(status, retry_after=2))
    with pytest.raises(error_class) as failed:
        anthropic_client.messages.create(**HELLO)
    assert failed.value.status_code == status
    assert failed.value.response.headers["retry-after"] == "2"
    body = failed.value.body
    assert isinstance(body, dict)
    assert body["error"] == {"type": kind, "message": f"fake failure {status}"}
    assert blocks(anthropic_client.messages.create(**HELLO))[0]["text"] == "echo: hello there"


def test_a_failure_body_is_sent_as_given(
    anthropic_client: anthropic.Anthropic, teacher: FakeTeacher
) -> None:
    teacher.fail_next(Failure(400, body=b"<html>bad gateway config</html>"))
    with pytest.raises(anthropic.BadRequestError) as failed:
        anthropic_client.messages.create(**HELLO)
    assert failed.value.response.text == "<html>bad gateway config</html>"
