"""Remote students: any OpenAI-compatible server (vLLM with --enable-lora, LoRAX) per student.

The remote is always asked for logprobs (top_logprobs at least 1) because the router's
confidence floor needs the mean token logprob whether or not the client wants logprobs; they
are trimmed to what the client asked for, or left out, in the answer the client gets.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson

from proxy.student_protocol import (
    Ending,
    Piece,
    StudentError,
    StudentResult,
    StudentStream,
    Transcript,
    collect,
    requested_top_logprobs,
    unsupported_reason,
)


class RemoteStudent:
    """One student served by an OpenAI-compatible URL, answering under its route's name."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        name: str,
        base_url: str,
        model: str,
        api_key: str | None = None,
        timeout_s: float = 60.0,
    ) -> None:
        self.session = session  # the proxy's shared session: connection pooling, one lifespan
        self.name = name
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)

    def supports(self, payload: dict[str, Any]) -> str | None:
        """None when the student can serve `payload`, else why not (see unsupported_reason)."""
        return unsupported_reason(payload)

    async def complete(self, payload: dict[str, Any]) -> StudentResult:
        """The whole answer; raises StudentError when the remote fails or answers nonsense."""
        return await collect(Transcript(payload, self.name), self._answer(payload))

    def stream(self, payload: dict[str, Any]) -> StudentStream:
        """The answer as chat.completion.chunk dicts (`async for`); `.result` at the end."""
        return StudentStream(Transcript(payload, self.name), self._stream(payload))

    def _body(self, payload: dict[str, Any], stream: bool) -> dict[str, Any]:
        reason = self.supports(payload)
        if reason is not None:
            raise StudentError(f"this student cannot serve the request ({reason})")
        body = {k: v for k, v in payload.items() if k not in ("stream", "stream_options")}
        body.update(model=self.model, stream=stream, logprobs=True)
        body["top_logprobs"] = max(1, requested_top_logprobs(payload) or 0)
        if stream:
            body["stream_options"] = {"include_usage": True}
        return body

    async def _post(self, body: dict[str, Any]) -> aiohttp.ClientResponse:
        try:
            response = await self.session.post(
                self.url, data=orjson.dumps(body), headers=self._json_headers, timeout=self.timeout
            )
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise StudentError(f"remote student {self.url} unreachable: {exc!r}") from exc
        if response.status != 200:
            text = (await response.text())[:300]
            response.release()
            raise StudentError(f"remote student {self.url} answered {response.status}: {text}")
        return response

    @property
    def _json_headers(self) -> dict[str, str]:
        return {**self.headers, "Content-Type": "application/json"}

    async def _answer(self, payload: dict[str, Any]) -> AsyncIterator[Piece | Ending]:
        keep = requested_top_logprobs(payload) or 0
        response = await self._post(self._body(payload, stream=False))
        try:
            async with response:
                data = await response.json(content_type=None)
            choice = data["choices"][0]
            text = choice["message"].get("content") or ""
            entries = (choice.get("logprobs") or {}).get("content") or []
            usage = data.get("usage") or {}
        except (aiohttp.ClientError, TimeoutError, ValueError, LookupError, TypeError) as exc:
            raise StudentError(f"remote student {self.url} sent a bad answer: {exc!r}") from exc
        yield Piece(text, _trimmed(entries, keep))
        yield _ending(choice.get("finish_reason"), usage, len(entries))

    async def _stream(self, payload: dict[str, Any]) -> AsyncIterator[Piece | Ending]:
        keep = requested_top_logprobs(payload) or 0
        response = await self._post(self._body(payload, stream=True))
        finish: str | None = None
        usage: dict[str, Any] = {}
        count = 0
        try:
            async with response:
                async for data in _event_data(response):
                    chunk = orjson.loads(data)
                    usage = chunk.get("usage") or usage
                    for choice in chunk.get("choices") or []:
                        entries = (choice.get("logprobs") or {}).get("content") or []
                        count += len(entries)
                        text = (choice.get("delta") or {}).get("content") or ""
                        finish = choice.get("finish_reason") or finish
                        if text or entries:
                            yield Piece(text, _trimmed(entries, keep))
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise StudentError(f"remote student {self.url} broke its stream: {exc!r}") from exc
        yield _ending(finish, usage, count)


async def _event_data(response: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    """The `data:` payloads of an SSE response as they arrive, up to [DONE]."""
    async for raw in response.content:
        line = raw.strip()
        if not line.startswith(b"data:"):
            continue
        data = line[5:].strip()
        if data == b"[DONE]":
            return
        yield data


def _trimmed(entries: list[dict[str, Any]], keep: int) -> list[dict[str, Any]]:
    """Entries with top_logprobs cut to what the client asked (we asked for at least one)."""
    return [{**e, "top_logprobs": (e.get("top_logprobs") or [])[:keep]} for e in entries]


def _ending(finish: str | None, usage: dict[str, Any], counted: int) -> Ending:
    if finish is None:
        raise StudentError("the remote student ended without a finish_reason")
    completion = int(usage.get("completion_tokens") or counted)
    return Ending(finish, int(usage.get("prompt_tokens") or 0), completion)
