"""The API surfaces a logged row can come from, and the chat form every later stage reads.

A row keeps its request and response as the client and the teacher sent them, with its
`endpoint` (``chat/completions``, ``responses``, ``messages``, ``completions``, ``embeddings``,
...). Curation learns from chat, the Responses API and Anthropic Messages alike by reading the
pair surfaces in chat form: `as_chat` turns a request into a chat request and an answer into a
chat completion. The proxy uses the same request translations to send a Responses or Messages
request to a chat teacher or a student.

Only what a student can learn from is carried over: text, images, function tools and their
calls and results, structured output. Built-in tools and server-side state have no chat form.
"""

from __future__ import annotations

import json
from typing import Any

CHAT, RESPONSES, MESSAGES, COMPLETIONS = "chat/completions", "responses", "messages", "completions"
PAIR_ENDPOINTS = frozenset({CHAT, RESPONSES, MESSAGES, COMPLETIONS})

Json = dict[str, Any]


def as_chat(endpoint: str | None, request: Json, response: Json | None) -> tuple[Json, Json | None]:
    """(chat request, chat completion) of a logged pair of any pair surface."""
    endpoint = endpoint or CHAT
    if endpoint == CHAT:
        return request, response
    convert = _TO_CHAT.get(endpoint)
    if convert is None:
        raise ValueError(f"{endpoint} calls are not (prompt, answer) pairs")
    request_to_chat, answer_to_chat = convert
    return request_to_chat(request), None if response is None else answer_to_chat(response)


# -- the Responses API ---------------------------------------------------------------------


def responses_request_to_chat(body: Json) -> Json:
    """A Responses request as a chat request: instructions and input items as messages."""
    messages: list[Json] = []
    if isinstance(body.get("instructions"), str) and body["instructions"]:
        messages.append({"role": "system", "content": body["instructions"]})
    items = body.get("input")
    if isinstance(items, str):
        items = [{"role": "user", "content": items}]
    for item in items if isinstance(items, list) else []:
        _add_responses_item(messages, item)
    chat: Json = {"model": body.get("model"), "messages": messages}
    tools = [_chat_tool(t) for t in body.get("tools") or [] if _is_function(t)]
    if tools:
        chat["tools"] = tools
    fmt = (body.get("text") or {}).get("format") if isinstance(body.get("text"), dict) else None
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        schema = {k: fmt[k] for k in ("name", "schema", "strict", "description") if k in fmt}
        chat["response_format"] = {"type": "json_schema", "json_schema": schema}
    elif isinstance(fmt, dict) and fmt.get("type") == "json_object":
        chat["response_format"] = {"type": "json_object"}
    _copy(body, chat, RESPONSES_PARAMETERS)
    return chat


def _add_responses_item(messages: list[Json], item: Any) -> None:
    if not isinstance(item, dict):
        return
    kind = item.get("type", "message")
    if kind == "message" and isinstance(item.get("role"), str):
        messages.append({"role": item["role"], "content": _responses_content(item.get("content"))})
    elif kind == "function_call":
        call = tool_call(item.get("call_id"), item.get("name"), item.get("arguments", ""))
        last = messages[-1] if messages else None
        if last is not None and last["role"] == "assistant" and "tool_calls" in last:
            last["tool_calls"].append(call)  # parallel calls of one turn
        else:
            messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
    elif kind == "function_call_output":
        output = item.get("output")
        text = output if isinstance(output, str) else json.dumps(output, ensure_ascii=False)
        messages.append({"role": "tool", "tool_call_id": item.get("call_id"), "content": text})


def _responses_content(content: Any) -> Any:
    if not isinstance(content, list):
        return content if isinstance(content, str) else ""
    parts: list[Json] = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("input_text", "output_text", "text"):
            parts.append({"type": "text", "text": part.get("text", "")})
        elif kind == "input_image":
            parts.append({"type": "image_url", "image_url": {"url": part.get("image_url")}})
        elif kind == "input_file":
            parts.append({"type": "file", "file": {k: v for k, v in part.items() if k != "type"}})
    if all(p["type"] == "text" for p in parts):
        return "".join(p["text"] for p in parts)
    return parts


def responses_answer_to_chat(response: Json) -> Json:
    """A Response object as a chat completion: its output message and function calls."""
    texts, refusals, calls = [], [], []
    for item in response.get("output") or []:
        if not isinstance(item, dict):
            continue
        if item.get("type") == "message":
            for part in item.get("content") or []:
                if isinstance(part, dict) and part.get("type") == "output_text":
                    texts.append(str(part.get("text", "")))
                elif isinstance(part, dict) and part.get("type") == "refusal":
                    refusals.append(str(part.get("refusal", "")))
        elif item.get("type") == "function_call":
            calls.append(
                tool_call(item.get("call_id"), item.get("name"), item.get("arguments", ""))
            )
    message: Json = {"role": "assistant", "content": "".join(texts) if texts else None}
    if calls:
        message["tool_calls"] = calls
    if refusals:
        message["refusal"] = "".join(refusals)
    incomplete = response.get("status") == "incomplete"
    finish = "length" if incomplete else ("tool_calls" if calls else "stop")
    usage = response.get("usage") or {}
    return _completion(response, message, finish, usage.get("input_tokens"),
                       usage.get("output_tokens"))  # fmt: skip


# -- Anthropic Messages --------------------------------------------------------------------


def messages_request_to_chat(body: Json) -> Json:
    """An Anthropic Messages request as a chat request."""
    messages: list[Json] = []
    system = body.get("system")
    if isinstance(system, list):
        system = "".join(b.get("text", "") for b in system if isinstance(b, dict))
    if isinstance(system, str) and system:
        messages.append({"role": "system", "content": system})
    for message in body.get("messages") or []:
        if isinstance(message, dict):
            messages.extend(_anthropic_message(message))
    chat: Json = {"model": body.get("model"), "messages": messages}
    tools = [
        {"type": "function", "function": {"name": t.get("name"),
                                          "description": t.get("description", ""),
                                          "parameters": t.get("input_schema") or {}}}
        for t in body.get("tools") or [] if isinstance(t, dict) and "input_schema" in t
    ]  # fmt: skip
    if tools:
        chat["tools"] = tools
    choice = body.get("tool_choice")
    if isinstance(choice, dict):
        kind = choice.get("type")
        if kind == "tool":
            chat["tool_choice"] = {"type": "function", "function": {"name": choice.get("name")}}
        elif kind in ("auto", "none"):
            chat["tool_choice"] = kind
        elif kind == "any":
            chat["tool_choice"] = "required"
    _copy(body, chat, MESSAGES_PARAMETERS)
    return chat


def _anthropic_message(message: Json) -> list[Json]:
    role, content = message.get("role"), message.get("content")
    if isinstance(content, str):
        return [{"role": role, "content": content}]
    parts: list[Json] = []
    calls: list[Json] = []
    results: list[Json] = []
    for block in content if isinstance(content, list) else []:
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            parts.append({"type": "text", "text": block.get("text", "")})
        elif kind == "image":
            parts.append({"type": "image_url", "image_url": {"url": _image_url(block)}})
        elif kind == "tool_use":
            calls.append(tool_call(block.get("id"), block.get("name"), _arguments(block)))
        elif kind == "tool_result":
            results.append({"role": "tool", "tool_call_id": block.get("tool_use_id"),
                            "content": _block_text(block.get("content"))})  # fmt: skip
    out: list[Json] = list(results)  # tool results come first: Anthropic sends them in a user turn
    if parts or calls:
        text_only = all(p["type"] == "text" for p in parts)
        joined: Any = "".join(p["text"] for p in parts) if text_only else parts
        turn: Json = {"role": role, "content": joined if parts else None}
        if calls:
            turn["tool_calls"] = calls
        out.append(turn)
    elif not results:
        out.append({"role": role, "content": ""})
    return out


def _image_url(block: Json) -> str:
    source = block.get("source") or {}
    if source.get("type") == "base64":
        return f"data:{source.get('media_type')};base64,{source.get('data')}"
    return str(source.get("url", ""))


def _block_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(b.get("text", "") for b in content if isinstance(b, dict))
    return ""


def messages_answer_to_chat(response: Json) -> Json:
    """An Anthropic Message as a chat completion."""
    texts, calls = [], []
    for block in response.get("content") or []:
        if not isinstance(block, dict):
            continue
        if block.get("type") == "text":
            texts.append(str(block.get("text", "")))
        elif block.get("type") == "tool_use":
            calls.append(tool_call(block.get("id"), block.get("name"), _arguments(block)))
    message: Json = {"role": "assistant", "content": "".join(texts) if texts else None}
    if calls:
        message["tool_calls"] = calls
    finish = {"max_tokens": "length", "tool_use": "tool_calls"}.get(
        str(response.get("stop_reason")), "stop"
    )
    usage = response.get("usage") or {}
    return _completion(response, message, finish, usage.get("input_tokens"),
                       usage.get("output_tokens"))  # fmt: skip


# -- legacy completions --------------------------------------------------------------------


def completions_request_to_chat(body: Json) -> Json:
    prompt = body.get("prompt")
    if isinstance(prompt, list):
        prompt = prompt[0] if prompt and isinstance(prompt[0], str) else ""
    chat: Json = {"model": body.get("model"), "messages": [{"role": "user", "content": prompt}]}
    for key in ("max_tokens", "temperature", "top_p", "stop", "stream"):
        if body.get(key) is not None:
            chat[key] = body[key]
    return chat


def completions_answer_to_chat(response: Json) -> Json:
    choices = response.get("choices") or [{}]
    first = choices[0] if isinstance(choices[0], dict) else {}
    message = {"role": "assistant", "content": first.get("text")}
    usage = response.get("usage") or {}
    return _completion(response, message, first.get("finish_reason") or "stop",
                       usage.get("prompt_tokens"), usage.get("completion_tokens"))  # fmt: skip


# -- shared --------------------------------------------------------------------------------

# Sampling parameters with a chat counterpart: (their name, chat's name).
_SAMPLING = (("temperature", "temperature"), ("top_p", "top_p"), ("stream", "stream"))
RESPONSES_PARAMETERS = (("max_output_tokens", "max_tokens"), *_SAMPLING)
MESSAGES_PARAMETERS = (("max_tokens", "max_tokens"), ("stop_sequences", "stop"), *_SAMPLING)


def _copy(body: Json, chat: Json, names: tuple[tuple[str, str], ...]) -> None:
    for theirs, ours in names:
        if body.get(theirs) is not None:
            chat[ours] = body[theirs]


def tool_call(call_id: Any, name: Any, arguments: Any) -> Json:
    """One chat tool call."""
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def _arguments(block: Json) -> str:
    return json.dumps(block.get("input") or {}, ensure_ascii=False)


def _is_function(tool: Any) -> bool:
    return isinstance(tool, dict) and tool.get("type") == "function" and "name" in tool


def _chat_tool(tool: Json) -> Json:
    function = {k: tool[k] for k in ("name", "description", "parameters", "strict") if k in tool}
    return {"type": "function", "function": function}


def _completion(source: Json, message: Json, finish: str, prompt: Any, completion: Any) -> Json:
    out: Json = {
        "id": source.get("id"),
        "object": "chat.completion",
        "model": source.get("model"),
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
    }
    if isinstance(prompt, int) and isinstance(completion, int):
        out["usage"] = {"prompt_tokens": prompt, "completion_tokens": completion,
                        "total_tokens": prompt + completion}  # fmt: skip
    return out


_TO_CHAT = {
    RESPONSES: (responses_request_to_chat, responses_answer_to_chat),
    MESSAGES: (messages_request_to_chat, messages_answer_to_chat),
    COMPLETIONS: (completions_request_to_chat, completions_answer_to_chat),
}
