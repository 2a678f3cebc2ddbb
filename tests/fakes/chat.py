"""`/v1/chat/completions` of the fake teacher: OpenAI's chat completions, plain and streamed.

The proxy's main surface: `n` choices, `logprobs`/`top_logprobs`, tool calls, JSON via
`response_format`, `stream_options.include_usage`. `completion` is the non-streaming answer;
`chunks` the streamed one, built from it so that the two always agree.
"""

from __future__ import annotations

import json
import time
from typing import Any

from tests.fakes.answers import Voice, finished, weather_arguments, word_pieces
from tests.fakes.errors import ApiError
from tests.fakes.wire import DONE, Reply, sse


class ChatApi:
    def __init__(self, voice: Voice) -> None:
        self.voice = voice

    def create(self, payload: dict[str, Any]) -> Reply:
        if not isinstance(payload.get("messages"), list) or not payload["messages"]:
            raise ApiError(
                400,
                "Missing required parameter: 'messages'.",
                param="messages",
                code="missing_required_parameter",
            )
        if payload.get("stream"):
            return Reply(stream=b"".join(sse(c) for c in self.chunks(payload)) + DONE)
        return Reply(body=self.completion(payload))

    def content_for(self, payload: dict[str, Any]) -> str:
        if self.voice.answer is not None:
            return str(self.voice.answer(payload))
        last = payload["messages"][-1]["content"]
        if isinstance(last, list):
            last = " ".join(p["text"] for p in last if isinstance(p, dict) and p.get("text"))
        fmt = payload.get("response_format") or {}
        if fmt.get("type") in ("json_object", "json_schema"):
            return json.dumps({"echo": last})
        return f"echo: {last}"

    def tool_call(self, payload: dict[str, Any]) -> dict[str, Any] | None:
        tools = payload.get("tools") or []
        if not tools or "weather" not in json.dumps(payload["messages"][-1]):
            return None
        name = tools[0]["function"]["name"]
        return {
            "id": "call_1",
            "type": "function",
            "function": {"name": name, "arguments": weather_arguments()},
        }

    def completion(self, payload: dict[str, Any]) -> dict[str, Any]:
        n = int(payload.get("n") or 1)
        content = self.content_for(payload)
        call = self.tool_call(payload)
        choices = []
        for i in range(n):
            message: dict[str, Any] = {"role": "assistant", "content": None if call else content}
            if call:
                message["tool_calls"] = [call]
            choice: dict[str, Any] = {
                "index": i,
                "message": message,
                "finish_reason": "tool_calls" if call else "stop",
            }
            if payload.get("logprobs"):
                choice["logprobs"] = {"content": self.logprobs(content, payload)}
            choices.append(choice)
        words = content.split()
        completion = {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.voice.model,
            "choices": choices,
            "usage": {
                "prompt_tokens": 11,
                "completion_tokens": len(words) * n,
                "total_tokens": 11 + len(words) * n,
            },
        }
        return finished(self.voice, completion)

    def logprobs(self, content: str, payload: dict[str, Any]) -> list[dict[str, Any]]:
        k = int(payload.get("top_logprobs") or 0)
        out = []
        for word in content.split(" "):
            top = [{"token": word, "logprob": -0.01, "bytes": None}]
            top += [{"token": f"alt{j}", "logprob": -5.0 - j, "bytes": None} for j in range(k - 1)]
            out.append({"token": word, "logprob": -0.01, "bytes": None, "top_logprobs": top[:k]})
        return out

    def chunks(self, payload: dict[str, Any]) -> list[dict[str, Any]]:
        full = self.completion(payload)
        base = {k: full[k] for k in ("id", "created", "model")} | {
            "object": "chat.completion.chunk"
        }
        out = []
        for choice in full["choices"]:
            i, message = choice["index"], choice["message"]
            out.append(
                base
                | {"choices": [{"index": i, "delta": {"role": "assistant"}, "finish_reason": None}]}
            )
            if message.get("tool_calls"):
                out += self._call_chunks(base, i, message["tool_calls"][0])
            else:
                out += self._content_chunks(base, choice)
            out.append(
                base
                | {"choices": [{"index": i, "delta": {}, "finish_reason": choice["finish_reason"]}]}
            )
        if (payload.get("stream_options") or {}).get("include_usage"):
            out.append(base | {"choices": [], "usage": full["usage"]})
        return out

    @staticmethod
    def _call_chunks(base: dict[str, Any], i: int, call: dict[str, Any]) -> list[dict[str, Any]]:
        args = call["function"]["arguments"]
        first = {
            "index": 0,
            "id": call["id"],
            "type": "function",
            "function": {"name": call["function"]["name"], "arguments": ""},
        }
        out = [base | {"choices": [{"index": i, "delta": {"tool_calls": [first]}}]}]
        for part in (args[: len(args) // 2], args[len(args) // 2 :]):
            delta = {"tool_calls": [{"index": 0, "function": {"arguments": part}}]}
            out.append(base | {"choices": [{"index": i, "delta": delta}]})
        return out

    def _content_chunks(self, base: dict[str, Any], choice: dict[str, Any]) -> list[dict[str, Any]]:
        out = []
        pieces = word_pieces(choice["message"]["content"], self.voice.delta_chars)
        for j, piece in enumerate(pieces):
            c: dict[str, Any] = {"index": choice["index"], "delta": {"content": piece}}
            c["finish_reason"] = None
            if choice.get("logprobs") and j < len(choice["logprobs"]["content"]):
                c["logprobs"] = {"content": [choice["logprobs"]["content"][j]]}
            out.append(base | {"choices": [c]})
        return out
