"""The in-process student backend on a real (small, quickly trained) student and a real thread."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from proxy.settings import StudentSettings
from proxy.student_backend import InProcessStudent, StudentPool
from proxy.student_protocol import StudentError
from retrain.students import load_student
from tests.retrain.triage_task import SYSTEM, make_rows


@pytest.fixture(scope="session")
def loaded(student_data: tuple[Path, int]) -> tuple[Any, Any]:
    data_dir, version = student_data
    return load_student(data_dir / "students" / "triage" / f"v{version}")


@pytest.fixture
def student(loaded: tuple[Any, Any]) -> Iterator[InProcessStudent]:
    # A wide window: on two busy cores the eight requests must still land in one batch.
    settings = StudentSettings(batch_window_ms=50, max_tokens=32)
    backend = InProcessStudent(*loaded, name="triage", version=1, settings=settings)
    yield backend
    backend.close()


def ask(text: str, **extra: Any) -> dict[str, Any]:
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": text}]
    return {"model": "triage", "messages": messages, **extra}


PROMPTS = [json.loads(r["messages"])[-1]["content"] for r in make_rows(8, seed=42)]


async def test_concurrent_requests_are_batched_and_match_unbatched_answers(
    student: InProcessStudent,
) -> None:
    together = await asyncio.gather(*(student.complete(ask(p)) for p in PROMPTS))
    assert student.stats.largest > 1
    alone = [await student.complete(ask(p)) for p in PROMPTS]
    texts = [r.response["choices"][0]["message"]["content"] for r in together]
    assert texts == [r.response["choices"][0]["message"]["content"] for r in alone]
    assert any(t.startswith("{") for t in texts)  # a real answer, not padding noise
    for a, b in zip(together, alone, strict=True):
        assert a.mean_logprob == pytest.approx(b.mean_logprob, abs=1e-3)


async def test_completion_is_openai_shaped_with_usage(student: InProcessStudent) -> None:
    result = await student.complete(ask(PROMPTS[0]))
    response = result.response
    assert response["object"] == "chat.completion" and response["model"] == "triage"
    choice = response["choices"][0]
    assert choice["message"]["role"] == "assistant" and choice["finish_reason"] in {
        "stop",
        "length",
    }
    assert choice["logprobs"] is None  # not asked for, yet the router still gets the mean
    assert result.mean_logprob <= 0 and result.latency_s > 0
    usage = response["usage"]
    assert usage["prompt_tokens"] > 10 and usage["completion_tokens"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


async def test_streamed_chunks_concatenate_to_the_completion(student: InProcessStudent) -> None:
    payload = ask(PROMPTS[1], stream=True, stream_options={"include_usage": True})
    stream = student.stream(payload)
    chunks = [chunk async for chunk in stream]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] > 0
    assert chunks[-2]["choices"][0]["finish_reason"] in {"stop", "length"}
    streamed = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks[:-1])
    whole = await student.complete(ask(PROMPTS[1]))
    assert streamed == whole.response["choices"][0]["message"]["content"] != ""
    assert stream.result.mean_logprob == pytest.approx(whole.mean_logprob, abs=1e-4)
    assert len(chunks) > 4  # token by token, not one blob


async def test_logprobs_and_top_logprobs(student: InProcessStudent) -> None:
    result = await student.complete(ask(PROMPTS[2], logprobs=True, top_logprobs=3))
    entries = result.response["choices"][0]["logprobs"]["content"]
    assert len(entries) == result.response["usage"]["completion_tokens"]
    for entry in entries:
        assert entry["logprob"] <= 0 and len(entry["top_logprobs"]) == 3
        assert entry["top_logprobs"][0]["token"] == entry["token"]  # greedy takes the best
        assert entry["bytes"] == list(entry["token"].encode())
    mean = sum(e["logprob"] for e in entries) / len(entries)
    assert result.mean_logprob == pytest.approx(mean)


async def test_max_tokens_gives_length(student: InProcessStudent) -> None:
    for key in ("max_tokens", "max_completion_tokens"):
        result = await student.complete(ask(PROMPTS[3], **{key: 3}))
        assert result.response["choices"][0]["finish_reason"] == "length"
        assert result.response["usage"]["completion_tokens"] == 3


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        ({}, None),
        ({"n": 2}, "n>1"),
        ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
        ({"modalities": ["text", "audio"]}, "audio"),
        ({"stop": ["\n"]}, "stop"),
    ],
)
def test_supports(student: InProcessStudent, extra: dict[str, Any], reason: str | None) -> None:
    assert student.supports(ask("hello", **extra)) == reason


@pytest.mark.parametrize(("kind", "reason"), [("image_url", "images"), ("input_audio", "audio")])
def test_supports_rejects_media_parts(student: InProcessStudent, kind: str, reason: str) -> None:
    content = [{"type": "text", "text": "what is this"}, {"type": kind, kind: {}}]
    assert student.supports({"messages": [{"role": "user", "content": content}]}) == reason


async def test_unsupported_request_raises(student: InProcessStudent) -> None:
    with pytest.raises(StudentError, match="n>1"):
        await student.complete(ask("hi", n=2))


async def test_event_loop_keeps_ticking_while_generating(student: InProcessStudent) -> None:
    gaps: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        last = time.perf_counter()
        while not done.is_set():
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    task = asyncio.create_task(ticker())
    await asyncio.gather(*(student.complete(ask(p, max_tokens=32)) for p in PROMPTS))
    done.set()
    await task
    assert len(gaps) >= 10 and max(gaps) < 0.25


async def test_close_fails_queued_and_later_requests(loaded: tuple[Any, Any]) -> None:
    settings = StudentSettings(max_batch_size=1, max_tokens=256)
    backend = InProcessStudent(*loaded, name="triage", version=1, settings=settings)
    first = asyncio.create_task(backend.complete(ask(PROMPTS[0], max_tokens=256)))
    queued = asyncio.create_task(backend.complete(ask(PROMPTS[1])))
    await asyncio.sleep(0.01)
    await asyncio.to_thread(backend.close)
    with pytest.raises(StudentError, match="closed"):
        await queued
    # The first may have finished before close; if not, it failed the same way.
    await asyncio.gather(first, return_exceptions=True)
    with pytest.raises(StudentError, match="closed"):
        await backend.complete(ask(PROMPTS[2]))


class _Broken(torch.nn.Module):
    """A model whose forward pass fails, as a corrupt adapter or OOM would."""

    def __init__(self, real: Any) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.config, self.generation_config = real.config, real.generation_config

    def forward(self, **_: Any) -> Any:
        raise RuntimeError("boom")


async def test_generation_error_is_a_student_error(loaded: tuple[Any, Any]) -> None:
    model, tokenizer = loaded
    backend = InProcessStudent(_Broken(model), tokenizer, name="triage", version=1)
    try:
        with pytest.raises(StudentError, match="boom"):
            await backend.complete(ask(PROMPTS[0]))
        with pytest.raises(StudentError, match="boom"):  # the worker survived the first
            async for _ in backend.stream(ask(PROMPTS[0])):
                pass
    finally:
        backend.close()


async def test_pool_loads_lazily_and_unloads(student_data: tuple[Path, int]) -> None:
    data_dir, version = student_data
    pool = StudentPool(data_dir, StudentSettings(max_tokens=8))
    assert pool.loaded() == []
    first, again = await asyncio.gather(pool.get("triage", version), pool.get("triage", version))
    assert first is again and pool.loaded() == [("triage", version)]
    result = await first.complete(ask(PROMPTS[0]))
    assert result.response["usage"]["completion_tokens"] <= 8
    with pytest.raises(StudentError, match="no registered student"):
        await pool.get("triage", 99)
    assert await pool.unload("triage", version) and pool.loaded() == []
    with pytest.raises(StudentError, match="closed"):
        await first.complete(ask(PROMPTS[0]))
    await pool.close()
