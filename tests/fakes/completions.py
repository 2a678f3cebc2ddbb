"""`/v1/completions` of the fake teacher: OpenAI's legacy text completions.

`prompt` is a string, a list of strings, a token array or a list of token arrays; each prompt
gets `n` choices, indexed prompt by prompt as the API does, `text` = `echo: <prompt>` (after
the prompt itself when `echo` is set). A stream is `text_completion` chunks, one per word,
a last chunk per choice with its `finish_reason`, a usage chunk when
`stream_options.include_usage` asks, and `data: [DONE]`.
"""

from __future__ import annotations

import time
from typing import Any

from tests.fakes.answers import (
    Voice,
    count_tokens,
    finished,
    new_id,
    reply_text,
    truncate,
    word_pieces,
)
from tests.fakes.wire import DONE, Reply, sse

# The API's documented default: a missing prompt is the end-of-text token.
DEFAULT_PROMPT = "<|endoftext|>"


class CompletionsApi:
    def __init__(self, voice: Voice) -> None:
        self.voice = voice

    def create(self, payload: dict[str, Any]) -> Reply:
        completion = finished(self.voice, self.completion(payload))
        if not payload.get("stream"):
            return Reply(body=completion)
        include_usage = (payload.get("stream_options") or {}).get("include_usage")
        chunks = completion_chunks(
            completion, include_usage=bool(include_usage), size=self.voice.delta_chars
        )
        return Reply(stream=b"".join(sse(c) for c in chunks) + DONE)

    def completion(self, payload: dict[str, Any]) -> dict[str, Any]:
        """The non-streaming answer to one request, before the `mutate` hook."""
        n = int(payload.get("n") or 1)
        choices, generated = [], 0
        for p, said in enumerate(prompts(payload.get("prompt"))):
            for j in range(n):
                full = reply_text(self.voice, payload, said, json_mode=False)
                text, cut = truncate(full, payload.get("max_tokens"))
                generated += count_tokens(text)
                shown = said + text if payload.get("echo") else text
                choices.append(
                    {
                        "text": shown,
                        "index": p * n + j,
                        "logprobs": None,
                        "finish_reason": "length" if cut else "stop",
                    }
                )
        asked = count_tokens(*prompts(payload.get("prompt")))
        return {
            "id": new_id("cmpl-"),
            "object": "text_completion",
            "created": int(time.time()),
            "model": self.voice.model,
            "choices": choices,
            "usage": {
                "prompt_tokens": asked,
                "completion_tokens": generated,
                "total_tokens": asked + generated,
            },
        }


def prompts(prompt: Any) -> list[str]:
    """Every prompt as text; a token array reads as its numbers."""
    if prompt is None:
        return [DEFAULT_PROMPT]
    if isinstance(prompt, str):
        return [prompt]
    if prompt and all(isinstance(t, int) for t in prompt):
        return [" ".join(map(str, prompt))]
    return [p if isinstance(p, str) else " ".join(map(str, p)) for p in prompt]


def completion_chunks(
    completion: dict[str, Any], *, include_usage: bool, size: int | None = None
) -> list[dict[str, Any]]:
    base = {k: completion[k] for k in ("id", "object", "created", "model")}
    out = []
    for choice in completion["choices"]:
        at = {"index": choice["index"], "logprobs": None}
        for piece in word_pieces(choice["text"], size):
            out.append(base | {"choices": [{"text": piece} | at | {"finish_reason": None}]})
        last = {"text": ""} | at | {"finish_reason": choice["finish_reason"]}
        out.append(base | {"choices": [last]})
    if include_usage:
        out.append(base | {"choices": [], "usage": completion["usage"]})
    return out
