"""Chat answers in the Responses and Anthropic shapes: validated by the official SDKs' own
models, and a stream's events agreeing with the whole answer."""

from __future__ import annotations

import json
from typing import Any

import pydantic
from anthropic.types import Message, RawMessageStreamEvent
from openai.types.responses import Response, ResponseStreamEvent

from proxy.translation import AnthropicWriter, ChatChunks, ResponsesWriter, completion_chunks, sse

TEXT = {"id": "c1", "model": "m", "created": 1,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hello there"},
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9}}  # fmt: skip
CALL = {"id": "c2", "model": "m", "created": 1,
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": None, "tool_calls": [{
                "id": "call_1", "type": "function",
                "function": {"name": "weather", "arguments": '{"city": "Paris"}'}}]}}],
        "usage": {"prompt_tokens": 7, "completion_tokens": 5, "total_tokens": 12}}  # fmt: skip
REQUEST = {"model": "r", "input": "hi", "tools": [{"type": "function", "name": "weather",
                                                   "parameters": {"type": "object"}}]}  # fmt: skip


def run(writer: Any, completion: dict[str, Any]) -> list[dict[str, Any]]:
    events = writer.start()
    for chunk in completion_chunks(completion, {"_usage": True}):
        events += writer.feed(chunk)
    return [*events, *writer.finish()]


def test_responses_events_and_object_parse_with_the_openai_sdk() -> None:
    for completion in (TEXT, CALL):
        writer = ResponsesWriter(REQUEST, "r")
        events = run(writer, completion)
        # The SDK's union, each event by the model its type names (a discriminated union).
        by_type = {m.model_fields["type"].annotation.__args__[0]: m
                   for m in ResponseStreamEvent.__origin__.__args__}  # type: ignore[attr-defined]  # fmt: skip
        parsed = [by_type[e["type"]].model_validate(e) for e in events]
        assert parsed[0].type == "response.created" and parsed[-1].type == "response.completed"
        assert [e["sequence_number"] for e in events] == list(range(len(events)))
        final = Response.model_validate(writer.response())
        assert final == parsed[-1].response  # the stream ends with the whole object
        assert final.usage is not None and final.usage.input_tokens == 7
    assert final.output[0].type == "function_call" and final.output[0].name == "weather"
    text = ResponsesWriter(REQUEST, "r")
    run(text, TEXT)
    assert Response.model_validate(text.response()).output_text == "hello there"


def test_anthropic_events_and_message_parse_with_the_anthropic_sdk() -> None:
    for completion, stop in ((TEXT, "end_turn"), (CALL, "tool_use")):
        writer = AnthropicWriter("r")
        events = run(writer, completion)
        adapter: Any = pydantic.TypeAdapter(RawMessageStreamEvent)
        kinds = [adapter.validate_python(e).type for e in events if e["type"] != "ping"]
        assert kinds[0] == "message_start" and kinds[-2:] == ["message_delta", "message_stop"]
        message = Message.model_validate(writer.message())
        assert message.stop_reason == stop and message.usage.input_tokens == 7
    assert message.content[0].type == "tool_use" and message.content[0].input == {"city": "Paris"}


def test_a_chat_stream_cut_anywhere_is_parsed_into_the_same_chunks() -> None:
    data = sse(completion_chunks(TEXT, {"_usage": True})) + b"data: [DONE]\n\n"
    whole = ChatChunks().feed(data)
    for cut in range(1, len(data), 7):
        parser = ChatChunks()
        assert parser.feed(data[:cut]) + parser.feed(data[cut:]) == whole
        assert parser.done
    assert json.dumps(whole[1]["choices"][0]["delta"]) == '{"content": "hello there"}'
