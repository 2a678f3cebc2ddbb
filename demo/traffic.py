"""Demo traffic: support messages sent with the official `openai` client, as an application would.

Concurrent workers each play user sessions (a session id in `x-apprentice-session`, several
requests each), stream some answers, post feedback on some to the proxy's `/v1/feedback`, and
send a few deliberately bad requests whose 4xx answers are expected. Every request is recorded:
who served it (`x-apprentice-served-by`), its latency, and whether its answer equals the
teacher's rule (`task.teacher_answer`). Any other failure is a bug the demo must surface.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
import openai
from openai import AsyncOpenAI

from demo import task

BadKind = Literal["unknown_model", "empty_messages"]
# What a correct server answers to each deliberate bad request.
EXPECTED_STATUS: dict[BadKind, int] = {"unknown_model": 404, "empty_messages": 400}
UNKNOWN = "unknown"  # served_by when the answer carries no x-apprentice-served-by header


@dataclass
class RequestResult:
    """One request's outcome, as the demo's client saw it."""

    t: float  # time.monotonic() when it was sent
    session: str
    served_by: str  # "teacher", "student:<version>", or UNKNOWN (no proxy in between)
    latency_s: float
    streamed: bool
    bad: BadKind | None = None  # set for a deliberate bad request
    status: int = 200
    agreed: bool | None = None  # answer == teacher's rule; None for bad requests
    request_id: str | None = None
    failure: str | None = None  # set when something went wrong that should not have
    feedback_score: float | None = None  # the feedback posted on this answer, if any
    feedback_failure: str | None = None


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


@dataclass
class TrafficStats:
    """Aggregates of a run's results; `from_results` rebuilds them from any list of results."""

    results: list[RequestResult] = field(default_factory=list)
    feedback_sent: int = 0

    @classmethod
    def from_results(cls, results: list[RequestResult], feedback_sent: int = 0) -> TrafficStats:
        return cls(results=list(results), feedback_sent=feedback_sent)

    @property
    def served(self) -> list[RequestResult]:
        """The ordinary requests (not the deliberate bad ones) that got an answer."""
        return [r for r in self.results if r.bad is None and r.failure is None]

    @property
    def failures(self) -> list[str]:
        """Everything that went wrong and should not have: requests, then feedback posts."""
        failed = [r.failure for r in self.results if r.failure is not None]
        return failed + [r.feedback_failure for r in self.results if r.feedback_failure]

    @property
    def expected_errors(self) -> int:
        return sum(1 for r in self.results if r.bad is not None and r.failure is None)

    @property
    def streamed(self) -> int:
        return sum(1 for r in self.served if r.streamed)

    def _by_served_by(self) -> Iterator[tuple[str, list[RequestResult]]]:
        groups: dict[str, list[RequestResult]] = {}
        for r in self.served:
            groups.setdefault(r.served_by, []).append(r)
        yield from sorted(groups.items())

    def counts(self) -> dict[str, int]:
        """Answered requests by served_by."""
        return {who: len(rs) for who, rs in self._by_served_by()}

    def agreement(self) -> dict[str, float]:
        """Share of answers equal to the teacher's, by served_by."""
        return {who: sum(1 for r in rs if r.agreed) / len(rs) for who, rs in self._by_served_by()}

    def latency(self) -> dict[str, tuple[float, float]]:
        """(p50, p95) latency in seconds, by served_by."""
        out = {}
        for who, rs in self._by_served_by():
            lat = [r.latency_s for r in rs]
            out[who] = (_percentile(lat, 0.5), _percentile(lat, 0.95))
        return out

    def student_share(self) -> float:
        """Share of answered requests a student served."""
        served = self.served
        return sum(1 for r in served if r.served_by.startswith("student")) / max(1, len(served))


@dataclass(frozen=True)
class _Settings:
    model: str
    phase: task.Phase
    feedback_share: float
    bad_share: float
    stream_share: float
    bad_kinds: tuple[BadKind, ...]
    think_s: float


def api_base(base_url: str) -> str:
    """The OpenAI base URL (ending in /v1) of a server given with or without the /v1."""
    base = base_url.rstrip("/")
    return base if base.endswith("/v1") else base + "/v1"


async def drive(
    base_url: str,
    api_key: str,
    model: str,
    *,
    phase: task.Phase,
    requests: int,
    concurrency: int,
    rng_seed: int,
    feedback_share: float = 0.2,
    bad_share: float = 0.02,
    stream_share: float = 0.3,
    bad_kinds: tuple[BadKind, ...] = ("unknown_model", "empty_messages"),
    session_length: tuple[int, int] = (3, 8),
    think_s: float = 0.0,
    stop: asyncio.Event | None = None,
    on_result: Callable[[RequestResult], None] | None = None,
) -> TrafficStats:
    """Send `requests` chat completions of `phase` traffic from `concurrency` workers.

    Sessions of `session_length` requests (inclusive range) share an `x-apprentice-session`
    id; `think_s` pauses between a session's requests. `bad_kinds` picks the deliberate bad
    requests (a raw provider may accept unknown models). Feedback is posted only for answers
    that carry `x-apprentice-request-id`, i.e. through the proxy. `stop`, when set, ends the
    run early after the requests in flight. `on_result` sees every result as it lands.
    """
    settings = _Settings(
        model, phase, feedback_share, bad_share if bad_kinds else 0.0, stream_share,
        bad_kinds, think_s,
    )  # fmt: skip
    rng = random.Random(rng_seed)
    sessions: asyncio.Queue[list[tuple[str, str]]] = asyncio.Queue()
    for session in _sessions(rng, requests, phase, session_length):
        sessions.put_nowait(session)
    stats = TrafficStats()
    client = AsyncOpenAI(base_url=api_base(base_url), api_key=api_key, max_retries=0, timeout=60)
    try:
        workers = [
            _worker(client, settings, sessions, random.Random(rng.random()), stats, stop, on_result)
            for _ in range(max(1, concurrency))
        ]
        await asyncio.gather(*workers)
    finally:
        await client.close()
    return stats


def _sessions(
    rng: random.Random, requests: int, phase: task.Phase, length: tuple[int, int]
) -> Iterator[list[tuple[str, str]]]:
    messages = task.sample_messages(rng, requests, phase)
    i = 0
    while i < len(messages):
        n = rng.randint(*length)
        sid = f"sess-{uuid.UUID(int=rng.getrandbits(128)).hex[:12]}"
        yield [(sid, m) for m in messages[i : i + n]]
        i += n


async def _worker(
    client: AsyncOpenAI,
    settings: _Settings,
    sessions: asyncio.Queue[list[tuple[str, str]]],
    rng: random.Random,
    stats: TrafficStats,
    stop: asyncio.Event | None,
    on_result: Callable[[RequestResult], None] | None,
) -> None:
    while not sessions.empty() and not (stop and stop.is_set()):
        for i, (sid, message) in enumerate(sessions.get_nowait()):
            if stop and stop.is_set():
                return
            if i and settings.think_s:
                await asyncio.sleep(settings.think_s)
            if rng.random() < settings.bad_share:
                result = await _bad_request(client, settings, sid, rng.choice(settings.bad_kinds))
            else:
                streamed = rng.random() < settings.stream_share
                result = await _ask(client, settings.model, sid, message, streamed)
                if result.request_id and rng.random() < settings.feedback_share:
                    await _feedback(client, result, rng)
                    stats.feedback_sent += result.feedback_failure is None
            stats.results.append(result)
            if on_result is not None:
                on_result(result)


async def _ask(
    client: AsyncOpenAI, model: str, sid: str, message: str, streamed: bool
) -> RequestResult:
    t0 = time.monotonic()
    result = RequestResult(t=t0, session=sid, served_by=UNKNOWN, latency_s=0.0, streamed=streamed)
    kwargs: dict[str, Any] = {
        "model": model,
        "messages": task.chat_messages(message),
        "temperature": 0,
        "max_tokens": 64,
        "extra_headers": {"x-apprentice-session": sid},
    }
    try:
        if streamed:
            raw = await client.chat.completions.with_raw_response.create(
                stream=True, stream_options={"include_usage": True}, **kwargs
            )
            parts = [c.choices[0].delta.content or "" async for c in raw.parse() if c.choices]
            answer = "".join(parts)
        else:
            raw = await client.chat.completions.with_raw_response.create(**kwargs)
            answer = raw.parse().choices[0].message.content or ""
    except (openai.APIError, httpx.HTTPError) as exc:
        result.failure = f"{type(exc).__name__}: {exc}"
        result.status = getattr(exc, "status_code", 0)
    else:
        result.served_by = raw.headers.get("x-apprentice-served-by", UNKNOWN)
        result.request_id = raw.headers.get("x-apprentice-request-id")
        result.agreed = answer.strip() == task.teacher_answer(message)
    result.latency_s = time.monotonic() - t0
    return result


async def _bad_request(
    client: AsyncOpenAI, settings: _Settings, sid: str, kind: BadKind
) -> RequestResult:
    t0 = time.monotonic()
    result = RequestResult(t=t0, session=sid, served_by=UNKNOWN, latency_s=0.0, streamed=False)
    result.bad = kind
    model = f"no-such-model-{uuid.uuid4().hex[:6]}" if kind == "unknown_model" else settings.model
    messages: list[Any] = (
        [] if kind == "empty_messages" else task.chat_messages("Where is my order?")
    )
    try:
        await client.chat.completions.create(
            model=model, messages=messages, extra_headers={"x-apprentice-session": sid}
        )
        result.failure = f"{kind}: expected HTTP {EXPECTED_STATUS[kind]}, got a 200 answer"
    except openai.APIStatusError as exc:
        result.status = exc.status_code
        if exc.status_code != EXPECTED_STATUS[kind]:
            result.failure = f"{kind}: expected HTTP {EXPECTED_STATUS[kind]}, got {exc}"
    except (openai.APIError, httpx.HTTPError) as exc:
        result.failure = f"{kind}: expected HTTP {EXPECTED_STATUS[kind]}, got {exc!r}"
    result.latency_s = time.monotonic() - t0
    return result


async def _feedback(client: AsyncOpenAI, result: RequestResult, rng: random.Random) -> None:
    """Post a user's verdict; a wrong answer is usually flagged, a right one rarely."""
    negative = rng.random() < (0.8 if not result.agreed else 0.05)
    score = -1.0 if negative else 1.0
    body = {
        "request_id": result.request_id,
        "score": score,
        "label": "wrong_triage" if negative else "helpful",
    }
    try:
        await client.post("/feedback", body=body, cast_to=httpx.Response)
    except (openai.APIError, httpx.HTTPError) as exc:
        result.feedback_failure = f"feedback on {result.request_id}: {type(exc).__name__}: {exc}"
    else:
        result.feedback_score = score
