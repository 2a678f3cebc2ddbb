"""Pairs of every surface read in chat form: what curation and the students see of them."""

from __future__ import annotations

import json

import pytest

from logbook.surfaces import as_chat

TOOL = {"type": "object", "properties": {"city": {"type": "string"}}}


def test_a_responses_pair_in_chat_form() -> None:
    request = {
        "model": "r", "instructions": "Be brief.", "max_output_tokens": 50,
        "input": [
            {"role": "user", "content": [{"type": "input_text", "text": "weather in "},
                                         {"type": "input_text", "text": "Paris?"}]},
            {"type": "function_call", "call_id": "c1", "name": "weather",
             "arguments": '{"city": "Paris"}'},
            {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
            {"role": "user", "content": "and tomorrow?"},
        ],
        "tools": [{"type": "function", "name": "weather", "parameters": TOOL},
                  {"type": "web_search"}],
        "text": {"format": {"type": "json_schema", "name": "w", "schema": TOOL}},
    }  # fmt: skip
    response = {"id": "resp_1", "model": "m", "status": "completed", "output": [
        {"type": "reasoning", "summary": []},
        {"type": "message", "role": "assistant",
         "content": [{"type": "output_text", "text": '{"city": "Paris"}', "annotations": []}]}],
        "usage": {"input_tokens": 30, "output_tokens": 6}}  # fmt: skip
    chat, completion = as_chat("responses", request, response)
    assert [m["role"] for m in chat["messages"]] == ["system", "user", "assistant", "tool", "user"]
    assert chat["messages"][1]["content"] == "weather in Paris?"
    assert chat["messages"][2]["tool_calls"][0]["function"]["name"] == "weather"
    assert chat["messages"][3] == {"role": "tool", "tool_call_id": "c1", "content": "sunny"}
    assert [t["function"]["name"] for t in chat["tools"]] == ["weather"]  # hosted tools: none
    assert chat["response_format"]["json_schema"]["schema"] == TOOL
    assert chat["max_tokens"] == 50
    assert completion is not None
    assert completion["choices"][0]["message"]["content"] == '{"city": "Paris"}'
    assert completion["usage"]["prompt_tokens"] == 30


def test_an_anthropic_pair_in_chat_form() -> None:
    request = {
        "model": "r", "max_tokens": 100, "system": [{"type": "text", "text": "Be brief."}],
        "messages": [
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": [{"type": "text", "text": "Let me look."},
                                              {"type": "tool_use", "id": "t1", "name": "weather",
                                               "input": {"city": "Paris"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1",
                                          "content": [{"type": "text", "text": "sunny"}]}]},
        ],
        "tools": [{"name": "weather", "description": "the weather", "input_schema": TOOL}],
        "tool_choice": {"type": "any"},
    }  # fmt: skip
    response = {"id": "msg_1", "model": "m", "stop_reason": "tool_use", "content": [
        {"type": "tool_use", "id": "t2", "name": "weather", "input": {"city": "Rome"}}],
        "usage": {"input_tokens": 40, "output_tokens": 9}}  # fmt: skip
    chat, completion = as_chat("messages", request, response)
    assert [m["role"] for m in chat["messages"]] == ["system", "user", "assistant", "tool"]
    assert chat["messages"][2]["content"] == "Let me look."
    assert json.loads(chat["messages"][2]["tool_calls"][0]["function"]["arguments"]) == {
        "city": "Paris"
    }
    assert chat["messages"][3]["content"] == "sunny"
    assert chat["tools"][0]["function"]["parameters"] == TOOL
    assert chat["tool_choice"] == "required" and chat["max_tokens"] == 100
    assert completion is not None
    choice = completion["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert json.loads(choice["message"]["tool_calls"][0]["function"]["arguments"]) == {
        "city": "Rome"
    }


def test_legacy_completions_and_chat_pairs() -> None:
    chat, completion = as_chat(
        "completions", {"model": "r", "prompt": "Say hi"},
        {"choices": [{"text": "hi", "finish_reason": "stop"}]},
    )  # fmt: skip
    assert chat["messages"] == [{"role": "user", "content": "Say hi"}]
    assert completion is not None and completion["choices"][0]["message"]["content"] == "hi"
    same = {"model": "r", "messages": [{"role": "user", "content": "x"}]}
    assert as_chat(None, same, None) == (same, None)  # rows from before endpoints were kept
    with pytest.raises(ValueError, match="not \\(prompt, answer\\) pairs"):
        as_chat("embeddings", {}, None)
