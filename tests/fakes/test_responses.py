"""The Responses API of the fake teacher, through openai-python's `client.responses`."""

from __future__ import annotations

import json
from typing import Any

import openai
import pydantic
import pytest
from openai.types.responses import Response, ResponseFunctionToolCall, ResponseStreamEvent

from tests.fakes.strict import by_type, event_data
from tests.fakes.teacher import FakeTeacher

EVENTS = by_type(ResponseStreamEvent)
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
}
TEXT_EVENTS = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.content_part.added",
    "response.output_text.delta",
    "response.output_text.delta",
    "response.output_text.delta",
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
    "response.completed",
]
CALL_EVENTS = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.function_call_arguments.delta",
    "response.function_call_arguments.delta",
    "response.function_call_arguments.done",
    "response.output_item.done",
    "response.completed",
]


class Echo(pydantic.BaseModel):
    echo: str


def test_a_plain_response_is_a_whole_response_object(
    openai_client: openai.OpenAI, teacher: FakeTeacher
) -> None:
    raw = openai_client.responses.with_raw_response.create(model="gpt-4.1", input="hello there")
    data = json.loads(raw.text)
    Response.model_validate(data)  # every field the SDK's model requires, with its type
    response = raw.parse()
    assert response.output_text == "echo: hello there"
    assert (data["object"], data["status"], data["model"]) == (
        "response",
        "completed",
        "fake-teacher-1",
    )
    assert data["id"].startswith("resp_") and data["completed_at"] >= data["created_at"]
    (item,) = data["output"]
    assert (item["type"], item["role"], item["status"]) == ("message", "assistant", "completed")
    assert item["content"] == [
        {"type": "output_text", "annotations": [], "logprobs": [], "text": "echo: hello there"}
    ]
    assert data["usage"] == {
        "input_tokens": 2,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": 3,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 5,
    }
    assert (data["tools"], data["tool_choice"], data["parallel_tool_calls"]) == ([], "auto", True)
    assert data["text"] == {"format": {"type": "text"}, "verbosity": "medium"}
    sent = teacher.received[-1]
    assert (sent.method, sent.path, sent.body["input"]) == ("POST", "/v1/responses", "hello there")
    assert sent.headers["authorization"] == "Bearer sk-test"


def test_input_items_answer_the_last_user_text(openai_client: openai.OpenAI) -> None:
    response = openai_client.responses.create(
        model="gpt-4.1",
        instructions="be brief",
        input=[
            {"role": "developer", "content": "no jokes"},
            {"role": "user", "content": [{"type": "input_text", "text": "first"}]},
            {"role": "assistant", "content": "ok"},
            {
                "type": "message",
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "second"},
                    {"type": "input_image", "image_url": "data:image/png;base64,AAAA"},
                ],
            },
        ],
    )
    assert response.output_text == "echo: second"
    assert response.instructions == "be brief"
    assert response.usage is not None and response.usage.input_tokens == 7  # a word a token


def test_a_stream_is_the_typed_events_in_order(openai_client: openai.OpenAI) -> None:
    events = list(openai_client.responses.create(model="gpt-4.1", input="a b", stream=True))
    assert [e.type for e in events] == TEXT_EVENTS
    assert [e.sequence_number for e in events] == list(range(len(events)))
    for event in events:  # each one whole, as the SDK's model of its type requires
        EVENTS[event.type].model_validate(event.to_dict())
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert deltas == ["echo:", " a", " b"]
    final = events[-1].response
    assert "".join(deltas) == final.output_text == "echo: a b"
    created = events[0].response
    assert created.id == final.id and created.status == "in_progress" and created.output == []
    item_id = final.output[0].id
    assert {getattr(e, "item_id", item_id) for e in events} == {item_id}
    assert openai_client.responses.retrieve(final.id).to_dict() == final.to_dict()


def test_a_raw_stream_names_each_event_and_has_no_done(openai_client: openai.OpenAI) -> None:
    with openai_client.responses.with_streaming_response.create(
        model="gpt-4.1", input="a b", stream=True
    ) as raw:
        assert raw.headers["content-type"] == "text/event-stream"
        lines = list(raw.iter_lines())
    assert "data: [DONE]" not in lines  # unlike chat, the Responses stream has no sentinel
    named = event_data(lines)
    assert [name for name, _ in named] == TEXT_EVENTS
    assert all(name == data["type"] for name, data in named)
    assert all("obfuscation" in d for n, d in named if n == "response.output_text.delta")


def test_obfuscation_can_be_turned_off(openai_client: openai.OpenAI) -> None:
    events = openai_client.responses.create(
        model="gpt-4.1",
        input="a b",
        stream=True,
        stream_options={"include_obfuscation": False},
    )
    assert not [e for e in events if "obfuscation" in e.to_dict()]


def test_the_stream_helper_assembles_the_same_response(openai_client: openai.OpenAI) -> None:
    with openai_client.responses.stream(model="gpt-4.1", input="say it twice") as stream:
        texts = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(texts) == final.output_text == "echo: say it twice"


def test_function_tools_get_a_function_call_item(
    openai_client: openai.OpenAI, teacher: FakeTeacher
) -> None:
    raw = openai_client.responses.with_raw_response.create(
        model="gpt-4.1", input="what is the weather in Paris?", tools=[WEATHER]
    )
    Response.model_validate(json.loads(raw.text))
    response = raw.parse()
    (call,) = response.output
    assert isinstance(call, ResponseFunctionToolCall)
    assert (call.name, call.status, json.loads(call.arguments)) == (
        "get_weather",
        "completed",
        {"city": "Paris"},
    )
    assert call.call_id.startswith("call_") and call.id is not None and call.id.startswith("fc_")
    assert response.output_text == ""
    assert response.tools[0].to_dict() == WEATHER | {"strict": True}  # echoed, strict by default
    assert teacher.received[-1].body["tools"] == [WEATHER]


def test_a_function_call_output_is_answered_and_ends_the_loop(openai_client: openai.OpenAI) -> None:
    asked = {"role": "user", "content": "what is the weather in Paris?"}
    first = openai_client.responses.create(model="gpt-4.1", input=[asked], tools=[WEATHER])
    call = first.output[0]
    assert isinstance(call, ResponseFunctionToolCall)
    output = {"type": "function_call_output", "call_id": call.call_id, "output": "sunny, 21C"}
    then = openai_client.responses.create(
        model="gpt-4.1",
        input=[asked, call.to_dict(), output],
        tools=[WEATHER],
    )
    assert then.output_text == "echo: sunny, 21C"


def test_tool_choice_none_answers_in_text(openai_client: openai.OpenAI) -> None:
    response = openai_client.responses.create(
        model="gpt-4.1", input="weather?", tools=[WEATHER], tool_choice="none"
    )
    assert response.output_text == "echo: weather?"


def test_a_streamed_function_call_carries_the_same_call(openai_client: openai.OpenAI) -> None:
    asked: dict[str, Any] = {"model": "gpt-4.1", "input": "weather in Paris?", "tools": [WEATHER]}
    plain = openai_client.responses.create(**asked)
    events = list(openai_client.responses.create(**asked, stream=True))
    assert [e.type for e in events] == CALL_EVENTS
    for event in events:
        EVENTS[event.type].model_validate(event.to_dict())
    added = events[2].item
    assert (added.status, added.arguments) == ("in_progress", "")
    pieces = [e.delta for e in events if e.type == "response.function_call_arguments.delta"]
    done = events[-1].response.output[0]
    assert "".join(pieces) == done.arguments == events[5].arguments
    assert done.call_id == plain.output[0].call_id
    with openai_client.responses.stream(**asked) as stream:
        assert stream.get_final_response().output[0].to_dict()["arguments"] == done.arguments


def test_structured_output_parses_into_the_model(
    openai_client: openai.OpenAI, teacher: FakeTeacher
) -> None:
    parsed = openai_client.responses.parse(model="gpt-4.1", input="hi", text_format=Echo)
    assert parsed.output_parsed == Echo(echo="hi")
    sent = teacher.received[-1].body["text"]["format"]
    assert (sent["type"], sent["name"], sent["strict"]) == ("json_schema", "Echo", True)
    assert parsed.text is not None and parsed.text.to_dict()["format"] == sent


def test_json_object_format_answers_json(openai_client: openai.OpenAI) -> None:
    response = openai_client.responses.create(
        model="gpt-4.1", input="hi there", text={"format": {"type": "json_object"}}
    )
    assert json.loads(response.output_text) == {"echo": "hi there"}


def test_a_stored_response_is_retrieved_then_deleted(
    openai_client: openai.OpenAI, teacher: FakeTeacher
) -> None:
    created = openai_client.responses.create(model="gpt-4.1", input="keep me")
    assert openai_client.responses.retrieve(created.id).to_dict() == created.to_dict()
    deleted = openai_client.responses.with_raw_response.delete(created.id)
    assert json.loads(deleted.text) == {"id": created.id, "object": "response", "deleted": True}
    assert teacher.received[-1].method == "DELETE"
    with pytest.raises(openai.NotFoundError) as gone:
        openai_client.responses.retrieve(created.id)
    assert gone.value.body == {
        "message": f"Response with id '{created.id}' not found.",
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    }
    with pytest.raises(openai.NotFoundError):
        openai_client.responses.delete(created.id)


def test_delete_returns_none_through_the_sdk(openai_client: openai.OpenAI) -> None:
    created = openai_client.responses.create(model="gpt-4.1", input="x")
    assert openai_client.responses.delete(created.id) is None


def test_store_false_keeps_nothing(openai_client: openai.OpenAI) -> None:
    created = openai_client.responses.create(model="gpt-4.1", input="forget me", store=False)
    assert created.store is False
    with pytest.raises(openai.NotFoundError):
        openai_client.responses.retrieve(created.id)


def test_previous_response_id_continues_a_stored_conversation(openai_client: openai.OpenAI) -> None:
    first = openai_client.responses.create(model="gpt-4.1", input="one two")
    then = openai_client.responses.create(
        model="gpt-4.1", input="three", previous_response_id=first.id
    )
    assert then.output_text == "echo: three" and then.previous_response_id == first.id
    assert first.usage is not None and then.usage is not None
    assert then.usage.input_tokens == 1 + first.usage.total_tokens  # the history is read again
    with pytest.raises(openai.BadRequestError) as unknown:
        openai_client.responses.create(
            model="gpt-4.1", input="x", previous_response_id="resp_nothing"
        )
    assert unknown.value.code == "previous_response_not_found"
    assert unknown.value.param == "previous_response_id"


def test_max_output_tokens_cuts_the_text_and_marks_it_incomplete(
    openai_client: openai.OpenAI,
) -> None:
    asked: dict[str, Any] = {"model": "gpt-4.1", "input": "a b c d", "max_output_tokens": 3}
    response = openai_client.responses.create(**asked)
    assert (response.status, response.output_text) == ("incomplete", "echo: a b")
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"
    assert response.usage is not None and response.usage.output_tokens == 3
    events = list(openai_client.responses.create(**asked, stream=True))
    assert events[-1].type == "response.incomplete"
    EVENTS["response.incomplete"].model_validate(events[-1].to_dict())
