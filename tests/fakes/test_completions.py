"""Legacy completions on the fake teacher, through openai-python's `client.completions`."""

from __future__ import annotations

import json

import openai
from openai.types import Completion

from tests.fakes.strict import event_data


def test_a_plain_completion_is_a_text_completion(openai_client: openai.OpenAI) -> None:
    raw = openai_client.completions.with_raw_response.create(
        model="gpt-3.5-turbo-instruct", prompt="hello world"
    )
    data = json.loads(raw.text)
    Completion.model_validate(data)
    assert data["id"].startswith("cmpl-") and data["object"] == "text_completion"
    assert data["choices"] == [
        {"text": "echo: hello world", "index": 0, "logprobs": None, "finish_reason": "stop"}
    ]
    assert data["usage"] == {"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5}


def test_each_prompt_gets_n_choices_in_order(openai_client: openai.OpenAI) -> None:
    completion = openai_client.completions.create(model="m", prompt=["one", "two"], n=2)
    assert [(c.index, c.text) for c in completion.choices] == [
        (0, "echo: one"),
        (1, "echo: one"),
        (2, "echo: two"),
        (3, "echo: two"),
    ]
    echoed = openai_client.completions.create(model="m", prompt="say ", echo=True)
    assert echoed.choices[0].text == "say echo: say "


def test_max_tokens_cuts_with_finish_reason_length(openai_client: openai.OpenAI) -> None:
    completion = openai_client.completions.create(model="m", prompt="a b c", max_tokens=2)
    assert (completion.choices[0].text, completion.choices[0].finish_reason) == (
        "echo: a",
        "length",
    )


def test_a_stream_joins_to_the_plain_text(openai_client: openai.OpenAI) -> None:
    chunks = list(
        openai_client.completions.create(
            model="m", prompt="hello world", stream=True, stream_options={"include_usage": True}
        )
    )
    texts = "".join(c.choices[0].text for c in chunks if c.choices)
    assert texts == "echo: hello world"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert all(c.object == "text_completion" for c in chunks)
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens == 5
    for chunk in chunks:
        Completion.model_validate(chunk.to_dict() | {"choices": []})
        for choice in chunk.choices:
            assert set(choice.to_dict()) == {"text", "index", "logprobs", "finish_reason"}


def test_a_raw_stream_ends_with_done(openai_client: openai.OpenAI) -> None:
    with openai_client.completions.with_streaming_response.create(
        model="m", prompt="hi", stream=True
    ) as raw:
        lines = list(raw.iter_lines())
    assert [line for line in lines if line][-1] == "data: [DONE]"
    assert all(name is None for name, _ in event_data(lines))  # data-only, as OpenAI sends
