"""What every student backend shares: request checks, and OpenAI-shaped answers built from
the pieces a backend produces.

A backend (in-process or remote) yields `Piece`s (a text delta and its token logprob entries)
and one `Ending`; `StudentStream` turns them into chat.completion.chunk dicts and keeps the
whole answer, and `Transcript.completion` turns them into one chat.completion dict. Building
both from the same pieces means a streamed answer concatenates to the non-streamed one.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from retrain.students import confidence_signals


class StudentError(Exception):
    """A student failed to answer; the router serves the teacher's answer instead."""


@dataclass(frozen=True)
class StudentResult:
    """A student's whole answer, with what the router needs beside it."""

    response: dict[str, Any]  # OpenAI chat.completion, logprobs only when the client asked
    mean_logprob: float  # mean over the answer's tokens; -inf for an empty answer
    latency_s: float
    # Every confidence signal of the answer (retrain.students.SIGNALS), computed from its
    # tokens as the retrain job computed them when it calibrated the student's cascade.
    signals: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Piece:
    """Text produced by the student, with the OpenAI logprob entries of its tokens."""

    text: str
    logprobs: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class Ending:
    finish_reason: str  # 'stop' or 'length'
    prompt_tokens: int
    completion_tokens: int


_PART_REASONS = {"image_url": "images", "input_audio": "audio", "file": "files"}


def unsupported_reason(payload: dict[str, Any]) -> str | None:
    """None when a student can serve `payload`, else a short label of what it cannot do.

    Tiny students answer text with text: they were never trained to emit tool calls, so any
    request offering tools goes to the teacher, as do images, audio, files, n>1 and stop
    sequences (not implemented).
    """
    messages = payload.get("messages")
    if not isinstance(messages, list) or not messages:
        return "no messages"
    if int(payload.get("n") or 1) > 1:
        return "n>1"
    if payload.get("tools") or payload.get("functions"):
        return "tools"
    if payload.get("audio") or "audio" in (payload.get("modalities") or []):
        return "audio"
    if payload.get("stop"):
        return "stop"
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):
            for part in content:
                kind = part.get("type") if isinstance(part, dict) else None
                if kind != "text":
                    return _PART_REASONS.get(str(kind), "content")
    return None


def requested_top_logprobs(payload: dict[str, Any]) -> int | None:
    """The client's top_logprobs when it asked for logprobs, else None."""
    if not payload.get("logprobs"):
        return None
    return max(0, min(20, int(payload.get("top_logprobs") or 0)))


def max_new_tokens(payload: dict[str, Any], limit: int) -> int:
    """The request's max_completion_tokens / max_tokens, capped by the backend's limit."""
    asked = payload.get("max_completion_tokens") or payload.get("max_tokens")
    return max(1, min(int(asked), limit)) if asked else limit


def include_usage(payload: dict[str, Any]) -> bool:
    options = payload.get("stream_options") or {}
    return bool(options.get("include_usage"))


def logprob_entry(token: str, logprob: float, top: list[tuple[str, float]]) -> dict[str, Any]:
    """One OpenAI logprobs.content entry."""
    return {
        "token": token,
        "logprob": logprob,
        "bytes": list(token.encode("utf-8")),
        "top_logprobs": [
            {"token": t, "logprob": lp, "bytes": list(t.encode("utf-8"))} for t, lp in top
        ],
    }


class Transcript:
    """The pieces of one answer so far, and the OpenAI dicts built from them."""

    def __init__(self, payload: dict[str, Any], model: str) -> None:
        self.payload = payload
        self.model = model
        self.id = f"chatcmpl-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.started = time.perf_counter()
        self.parts: list[str] = []
        self.entries: list[dict[str, Any]] = []
        self.ending: Ending | None = None

    def add(self, piece: Piece) -> None:
        self.parts.append(piece.text)
        self.entries.extend(piece.logprobs)

    @property
    def text(self) -> str:
        return "".join(self.parts)

    @property
    def mean_logprob(self) -> float:
        if not self.entries:
            return -math.inf  # no tokens, no evidence: an empty answer passes no floor
        return sum(float(e["logprob"]) for e in self.entries) / len(self.entries)

    def usage(self) -> dict[str, int]:
        end = self.ending or Ending("stop", 0, len(self.entries))
        total = end.prompt_tokens + end.completion_tokens
        return {
            "prompt_tokens": end.prompt_tokens,
            "completion_tokens": end.completion_tokens,
            "total_tokens": total,
        }

    def _logprobs(self, entries: list[dict[str, Any]]) -> dict[str, Any] | None:
        if requested_top_logprobs(self.payload) is None:
            return None
        return {"content": entries}

    def completion(self) -> dict[str, Any]:
        """The whole answer as an OpenAI chat.completion."""
        choice: dict[str, Any] = {
            "index": 0,
            "message": {"role": "assistant", "content": self.text},
            "logprobs": self._logprobs(self.entries),
            "finish_reason": self.ending.finish_reason if self.ending else None,
        }
        return {**self._head("chat.completion"), "choices": [choice], "usage": self.usage()}

    @property
    def signals(self) -> dict[str, float]:
        tokens = [str(e.get("token", "")) for e in self.entries]
        return confidence_signals(tokens, [float(e["logprob"]) for e in self.entries])

    def result(self) -> StudentResult:
        latency = time.perf_counter() - self.started
        return StudentResult(self.completion(), self.mean_logprob, latency, self.signals)

    def _head(self, kind: str) -> dict[str, Any]:
        return {"id": self.id, "object": kind, "created": self.created, "model": self.model}

    def chunk(
        self, delta: dict[str, Any], piece: Piece | None = None, finish: str | None = None
    ) -> dict[str, Any]:
        choice: dict[str, Any] = {"index": 0, "delta": delta, "finish_reason": finish}
        if piece is not None:
            choice["logprobs"] = self._logprobs(piece.logprobs)
        return {**self._head("chat.completion.chunk"), "choices": [choice]}

    def usage_chunk(self) -> dict[str, Any]:
        return {**self._head("chat.completion.chunk"), "choices": [], "usage": self.usage()}


async def collect(transcript: Transcript, pieces: AsyncIterator[Piece | Ending]) -> StudentResult:
    """Drain a backend's pieces into `transcript` and return the finished result."""
    async for item in pieces:
        if isinstance(item, Ending):
            transcript.ending = item
        else:
            transcript.add(item)
    if transcript.ending is None:
        raise StudentError("the student stopped without finishing its answer")
    return transcript.result()


class StudentStream:
    """chat.completion.chunk dicts of one streamed answer; `result` once it is exhausted.

    Chunks: the role first, one per non-empty text piece, the finish_reason, then usage when
    the request's stream_options.include_usage asks for it.
    """

    def __init__(self, transcript: Transcript, pieces: AsyncIterator[Piece | Ending]) -> None:
        self.transcript = transcript
        self._pieces = pieces
        self._chunks = self._run()

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        return self._chunks

    async def aclose(self) -> None:
        await self._chunks.aclose()  # type: ignore[attr-defined]

    @property
    def result(self) -> StudentResult:
        if self.transcript.ending is None:
            raise StudentError("the stream has not finished yet")
        return self.transcript.result()

    async def _run(self) -> AsyncIterator[dict[str, Any]]:
        t = self.transcript
        yield t.chunk({"role": "assistant", "content": ""})
        try:
            async for item in self._pieces:
                if isinstance(item, Ending):
                    t.ending = item
                elif item.text or item.logprobs:
                    t.add(item)
                    yield t.chunk({"content": item.text}, item)
        finally:
            await self._pieces.aclose()  # type: ignore[attr-defined]
        if t.ending is None:
            raise StudentError("the student stopped without finishing its answer")
        yield t.chunk({}, finish=t.ending.finish_reason)
        if include_usage(t.payload):
            yield t.usage_chunk()
