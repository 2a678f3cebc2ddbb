"""Chat completions on the fake teacher, through openai-python: the surface the proxy serves."""

from __future__ import annotations

import json

import openai
from openai.types.chat import ChatCompletion

from tests.fakes.strict import event_data

TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {}}}
HELLO = [{"role": "user", "content": "hello there"}]


def test_a_plain_completion_echoes(openai_client: openai.OpenAI) -> None:
    raw = openai_client.chat.completions.with_raw_response.create(model="m", messages=HELLO)
    ChatCompletion.model_validate(json.loads(raw.text))
    completion = raw.parse()
    assert completion.choices[0].message.content == "echo: hello there"
    assert completion.choices[0].finish_reason == "stop"


def test_a_stream_joins_to_the_plain_answer(openai_client: openai.OpenAI) -> None:
    chunks = list(
        openai_client.chat.completions.create(
            model="m", messages=HELLO, stream=True, stream_options={"include_usage": True}
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: hello there"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 3


def test_weather_with_tools_is_a_tool_call(openai_client: openai.OpenAI) -> None:
    completion = openai_client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "weather?"}], tools=[TOOL]
    )
    (call,) = completion.choices[0].message.tool_calls or []
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    assert completion.choices[0].finish_reason == "tool_calls"


def test_a_raw_stream_is_data_lines_ending_with_done(openai_client: openai.OpenAI) -> None:
    with openai_client.chat.completions.with_streaming_response.create(
        model="m", messages=HELLO, stream=True
    ) as raw:
        lines = list(raw.iter_lines())
    assert [line for line in lines if line][-1] == "data: [DONE]"
    assert all(name is None for name, _ in event_data(lines))
