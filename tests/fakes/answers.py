"""The one rule every surface of the fake teacher answers by, whatever its wire format.

`echo: <text>` for the text the caller said last; `{"echo": "<text>"}` when JSON is asked for;
a call to the first offered tool with `{"city": "Paris"}` when a user's text mentions
"weather". Counting, truncation and ids are here too, so that the surfaces agree on them: a
token is a word, so usage is predictable from the prompt alone.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable
from typing import Any, Protocol

WEATHER_ARGUMENTS: dict[str, Any] = {"city": "Paris"}


class Voice(Protocol):
    """What a surface reads from the teacher each time it answers: tests swap hooks live."""

    model: str
    answer: Callable[[dict[str, Any]], object] | None
    mutate: Callable[[dict[str, Any]], dict[str, Any]] | None
    delta_chars: int | None  # stream text in pieces of this many characters (None: per word)


def reply_text(voice: Voice, payload: dict[str, Any], said: str, *, json_mode: bool) -> str:
    if voice.answer is not None:
        return str(voice.answer(payload))
    return json.dumps({"echo": said}) if json_mode else f"echo: {said}"


def asks_for_weather(said: str) -> bool:
    # Case-sensitive, as the chat surface has always matched: one rule across the surfaces.
    return "weather" in said


def finished(voice: Voice, answer: dict[str, Any]) -> dict[str, Any]:
    """The answer after the test's `mutate` hook, the one place odd shapes are made."""
    return voice.mutate(answer) if voice.mutate is not None else answer


def weather_arguments() -> str:
    return json.dumps(WEATHER_ARGUMENTS)


def word_pieces(text: str, size: int | None = None) -> list[str]:
    """The text as stream deltas, one per word (or per `size` characters: a word split across
    events), that join back to exactly the text."""
    if size is not None:
        return [text[i : i + size] for i in range(0, len(text), size)] or [""]
    words = text.split(" ")
    return [w if i == 0 else " " + w for i, w in enumerate(words)]


def halves(text: str) -> list[str]:
    """Tool-call arguments as two deltas: a cut inside the JSON, as real streams make."""
    return [text[: len(text) // 2], text[len(text) // 2 :]]


def count_tokens(*texts: str) -> int:
    return sum(len(t.split()) for t in texts)


def truncate(text: str, limit: int | None) -> tuple[str, bool]:
    """The text cut to `limit` tokens (words), and whether it was cut."""
    pieces = word_pieces(text)
    if limit is None or len(pieces) <= limit:
        return text, False
    return "".join(pieces[: max(limit, 0)]), True


def new_id(prefix: str) -> str:
    return prefix + uuid.uuid4().hex


def call_id(prefix: str, said: str, tool: str) -> str:
    """A tool call's id from what asked for it: a streamed and a plain answer to the same
    conversation carry the same call, so that tests can compare them whole."""
    return prefix + hashlib.sha256(f"{tool}\0{said}".encode()).hexdigest()[:24]


def text_of(content: Any) -> str:
    """The words in a content field: a string, or the `text` of each part of a list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)
        )
    return ""
