from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from rich.console import Console

from demo import task
from demo.report import DemoSummary, Transition, plot_timeline, summary_table
from demo.teacher import SimulatedTeacher
from demo.traffic import RequestResult, TrafficStats, api_base, drive


@pytest.fixture
def teacher() -> Iterator[SimulatedTeacher]:
    with SimulatedTeacher(latency_s=0, ttft_s=0, per_token_s=0) as t:
        yield t


def test_api_base_adds_v1_once() -> None:
    assert api_base("http://h:1") == "http://h:1/v1"
    assert api_base("http://h:1/") == "http://h:1/v1"
    assert api_base("http://h:1/v1/") == "http://h:1/v1"


async def test_drive_against_the_teacher_agrees_fully(teacher: SimulatedTeacher) -> None:
    seen: list[RequestResult] = []
    stats = await drive(
        teacher.base_url, "k", "sim-teacher-1", phase="shifted", requests=160, concurrency=6,
        rng_seed=1, bad_share=0.1, stream_share=0.4, on_result=seen.append,
    )  # fmt: skip
    assert stats.failures == []
    assert len(seen) == len(stats.results) == 160
    assert stats.counts() == {"unknown": 160 - stats.expected_errors}
    assert stats.agreement() == {"unknown": 1.0}
    assert 5 <= stats.expected_errors <= 30
    assert {r.status for r in stats.results if r.bad} == {400, 404}
    assert 20 < stats.streamed < 110
    assert stats.feedback_sent == 0  # a raw provider gives no request id to give feedback on
    assert len({r.session for r in stats.results}) < 160 / 2
    assert teacher.requests_served == 160 - stats.expected_errors
    p50, p95 = stats.latency()["unknown"]
    assert 0 < p50 <= p95


async def test_wrong_model_is_an_unexpected_failure(teacher: SimulatedTeacher) -> None:
    stats = await drive(
        teacher.base_url, "k", "gpt-unknown", phase="base", requests=5, concurrency=1,
        rng_seed=3, bad_share=0.0,
    )  # fmt: skip
    assert len(stats.failures) == 5
    assert all("NotFoundError" in f for f in stats.failures)


async def test_stop_event_ends_the_run_early(teacher: SimulatedTeacher) -> None:
    stop = asyncio.Event()

    def on_result(r: RequestResult) -> None:
        stop.set()

    stats = await drive(
        teacher.base_url, "k", "sim-teacher-1", phase="base", requests=200, concurrency=2,
        rng_seed=4, stop=stop, on_result=on_result,
    )  # fmt: skip
    assert 1 <= len(stats.results) <= 4


# -- through a stand-in proxy: headers, sessions and feedback ------------------------------


class FakeProxy:
    """Answers like the proxy would: apprentice headers, /v1/feedback, 404/400 on bad input."""

    def __init__(self) -> None:
        self.lax = False  # True: accept any model name, as a careless server might
        self.feedback: list[dict[str, Any]] = []
        self.sessions: list[str] = []
        self.count = 0

    async def chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        if body["model"] != "triage" and not self.lax:
            return web.json_response({"error": {"message": "no route", "code": None}}, status=404)
        if not body["messages"]:
            return web.json_response({"error": {"message": "empty", "code": None}}, status=400)
        self.count += 1
        self.sessions.append(request.headers["x-apprentice-session"])
        student = self.count % 2 == 0
        answer = task.teacher_answer(body["messages"][-1]["content"])
        if student and self.count % 4 == 0:
            answer = '{"intent":"order_status","priority":"low"}'  # a student's mistake
        headers = {
            "x-apprentice-request-id": f"req_{self.count}",
            "x-apprentice-served-by": "student:v1" if student else "teacher",
        }
        if not body.get("stream"):
            msg = {"role": "assistant", "content": answer}
            choice = {"index": 0, "message": msg, "finish_reason": "stop"}
            data = {"id": "x", "object": "chat.completion", "created": 0, "model": "triage",
                    "choices": [choice]}  # fmt: skip
            return web.json_response(data, headers=headers)
        resp = web.StreamResponse(headers=headers | {"content-type": "text/event-stream"})
        await resp.prepare(request)
        choice = {"index": 0, "delta": {"content": answer}, "finish_reason": None}
        chunk = {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": "triage",
                 "choices": [choice]}  # fmt: skip
        await resp.write(b"data: " + json.dumps(chunk).encode() + b"\n\ndata: [DONE]\n\n")
        await resp.write_eof()
        return resp

    async def post_feedback(self, request: web.Request) -> web.Response:
        self.feedback.append(await request.json())
        return web.json_response({"id": "fb_1", "object": "feedback"})


@pytest.fixture
async def proxy() -> AsyncIterator[tuple[str, FakeProxy]]:
    fake = FakeProxy()
    app = web.Application()
    app.router.add_post("/v1/chat/completions", fake.chat)
    app.router.add_post("/v1/feedback", fake.post_feedback)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}", fake
    await runner.cleanup()


async def test_drive_through_a_proxy_records_served_by_and_feedback(
    proxy: tuple[str, FakeProxy],
) -> None:
    base, fake = proxy  # no /v1: drive must add it, for chat and for feedback alike
    stats = await drive(
        base, "k", "triage", phase="base", requests=120, concurrency=4, rng_seed=5,
        feedback_share=0.5, bad_share=0.05, stream_share=0.5,
    )  # fmt: skip
    assert stats.failures == []
    counts = stats.counts()
    assert set(counts) == {"teacher", "student:v1"}
    assert abs(counts["teacher"] - counts["student:v1"]) <= 1
    agreement = stats.agreement()
    assert agreement["teacher"] == 1.0
    assert 0.4 < agreement["student:v1"] < 0.7  # every other student answer was wrong
    assert 0.4 < stats.student_share() < 0.6
    assert stats.feedback_sent == len(fake.feedback) > 20
    assert {f["request_id"] for f in fake.feedback} <= {f"req_{i}" for i in range(1, 200)}
    scores = [f["score"] for f in fake.feedback]
    assert scores.count(1.0) > scores.count(-1.0) > 0
    assert len(set(fake.sessions)) < len(fake.sessions) / 2  # sessions span several requests


def test_summary_table_and_timeline_plot(tmp_path: Path) -> None:
    results = [
        RequestResult(t=0, session="s", served_by="teacher", latency_s=0.3, streamed=False,
                      agreed=True),
        RequestResult(t=1, session="s", served_by="student:v1", latency_s=0.05, streamed=True,
                      agreed=True),
    ]  # fmt: skip
    stats = TrafficStats.from_results(results)
    summary = DemoSummary(
        requests=stats.counts(), agreement_live=stats.agreement(), latency=stats.latency(),
        agreement_heldout=0.995, teacher_cost_usd=0.12, cost_avoided_usd=0.34,
        transitions=[Transition(t=42, student="student:v1", change="canary 10% -> 50%",
                                reason="agreement 99% over 200 pairs")],
        locations={"data": str(tmp_path)},
    )  # fmt: skip
    console = Console(width=120, record=True)
    console.print(summary_table(summary))
    text = console.export_text()
    assert "student:v1" in text and "99.5%" in text and "canary 10% -> 50%" in text
    points = [
        {"t": 0, "student_share": 0.0, "agreement": 1.0, "drift": None},
        {"t": 30, "student_share": 0.5, "agreement": 0.98, "drift": 0.05, "event": "promote v1"},
        {"t": 60, "student_share": 0.1, "agreement": 0.7, "drift": 0.4, "event": "rollback"},
    ]
    out = plot_timeline(points, tmp_path / "plots" / "timeline.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


async def test_a_bad_request_that_succeeds_is_a_failure(proxy: tuple[str, FakeProxy]) -> None:
    base, fake = proxy
    fake.lax = True
    stats = await drive(
        base, "k", "triage", phase="base", requests=30, concurrency=2, rng_seed=6,
        bad_share=1.0, bad_kinds=("unknown_model",),
    )  # fmt: skip
    assert stats.expected_errors == 0
    assert len(stats.failures) == 30
    assert "expected HTTP 404" in stats.failures[0]
