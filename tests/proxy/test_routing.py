"""Students in traffic, end to end: the real proxy under uvicorn, the official openai client,
a real (small, quickly trained) student and the fake teacher.

Weights, sticky sessions, shadow comparisons off the response path, every fallback reason,
and the canary controller moving a student from shadow to promotion on its own, rolling a
broken one back without a client seeing an error, and surviving a restart.
"""

from __future__ import annotations

import asyncio
import copy
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from apprentice.config import Config
from logbook.segments import open_segments
from proxy.settings import StudentSettings
from proxy.student_backend import InProcessStudent
from proxy.student_protocol import StudentResult
from tests.conftest import ADMIN_TOKEN, CLIENT_KEY, RunningProxy, proxy_config
from tests.fakes.teacher import FakeTeacher
from tests.retrain.triage_task import SYSTEM, make_rows

PROMPTS = [json.loads(r["messages"])[-1]["content"] for r in make_rows(60, seed=11)]
SERVED_BY = "x-apprentice-served-by"
SERVING = (
    "confidence_floor",
    "student_timeout_s",
    "cascade",
    "cascade_signal",
    "cascade_threshold",
)

# -- helpers -------------------------------------------------------------------------------


def routing_config(
    data_dir: Path, teacher: FakeTeacher, students: dict[str, Any] | None = None, **canary: Any
) -> Config:
    """The test route with these canary (and serving) settings; student answers capped at 32
    tokens. The calibrated cascade is off unless asked for: the quick student's own rule
    serves nothing (tests/proxy/test_cascade.py covers it)."""
    serving = {"cascade": False} | {key: canary.pop(key) for key in SERVING if key in canary}
    config = proxy_config(data_dir, teacher, canary=canary, **serving)
    return config.model_copy(
        update={"students": StudentSettings(**({"max_tokens": 32} | (students or {})))}
    )


def client(running: RunningProxy) -> openai.OpenAI:
    return openai.OpenAI(base_url=running.base_url, api_key=CLIENT_KEY, max_retries=0, timeout=30)


def ask(text: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": text}]


def admin(running: RunningProxy, method: str, path: str, body: Any = None) -> dict[str, Any]:
    response = httpx.request(
        method,
        f"{running.url}/admin{path}",
        json=body,
        headers={"authorization": f"Bearer {ADMIN_TOKEN}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def canary(running: RunningProxy) -> dict[str, Any]:
    snapshot: dict[str, Any] = admin(running, "GET", "/canary")["routes"]["triage"]
    return snapshot


def metric(running: RunningProxy, name: str, **labels: str) -> float:
    """The sum of the samples of `name` whose labels include `labels`."""
    text = httpx.get(f"{running.url}/metrics", timeout=10).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


def wait_for(check: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll `check` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def logged(running: RunningProxy) -> list[dict[str, Any]]:
    """Stop the proxy (drain, finish shadows, seal) and read every row from the segments."""
    running.stop()
    con = open_segments(running.config.data_dir)
    cur = con.execute("SELECT * FROM requests ORDER BY seq")
    names = [d[0] for d in cur.description]
    rows = [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
    for row in rows:
        row["tags"] = json.loads(row["tags"]) if row["tags"] else {}
    return rows


def content(answer: Any) -> str:
    text = answer.choices[0].message.content
    assert isinstance(text, str)
    return text


# -- weights -------------------------------------------------------------------------------


def test_weight_100_serves_every_request_from_the_student(
    student_dir: Path, teacher: FakeTeacher
) -> None:
    config = routing_config(
        student_dir, teacher, holdout_share=0.0, shadow_share=0.0, confidence_floor=None
    )
    with RunningProxy(config) as running:
        snap = admin(running, "POST", "/canary/triage/set-weight", {"version": "v1", "weight": 100})
        assert (snap["state"], snap["weights"]) == ("canary", {"v1": 100})
        c = client(running)
        answers = {}
        for i, text in enumerate(PROMPTS[:5]):
            raw = c.chat.completions.with_raw_response.create(
                model="triage", messages=ask(text), extra_headers={"x-apprentice-session": f"s{i}"}
            )
            assert raw.headers[SERVED_BY] == "student:v1"
            answer = raw.parse()
            assert answer.object == "chat.completion" and answer.model == "triage"
            assert answer.id.startswith("chatcmpl-")
            choice = answer.choices[0]
            assert choice.message.role == "assistant" and content(answer)
            assert choice.finish_reason in ("stop", "length")
            assert answer.usage is not None and answer.usage.completion_tokens > 0
            answers[text] = content(answer)

        raw_stream = c.chat.completions.with_raw_response.create(
            model="triage",
            messages=ask(PROMPTS[0]),
            stream=True,
            stream_options={"include_usage": True},
        )
        assert raw_stream.headers[SERVED_BY] == "student:v1"
        assert raw_stream.headers["content-type"].startswith("text/event-stream")
        chunks = list(raw_stream.parse())
        assert all(ch.object == "chat.completion.chunk" for ch in chunks)
        streamed = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
        assert streamed == answers[PROMPTS[0]]  # greedy: the same answer either way
        assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
        assert teacher.received == []  # the teacher was never asked

        avoided = wait_for(
            lambda: metric(running, "apprentice_teacher_cost_avoided_usd_total", route="triage"),
            10,
            "teacher cost avoided",
        )
        assert avoided > 0
        assert metric(running, "apprentice_teacher_cost_usd_total", route="triage") == 0
    rows = logged(running)
    assert len(rows) == 6
    assert {r["served_by"] for r in rows} == {"student:v1"}
    assert all(r["outcome"] == "ok" and r["status"] == 200 for r in rows)
    assert [r["stream"] for r in rows].count(True) == 1
    assert all(r["cost_usd"] is None and r["completion_tokens"] > 0 for r in rows)
    assert all("fallback" not in r["tags"] for r in rows)


async def _send_sessions(
    running: RunningProxy, sessions: list[str], max_tokens: int = 4
) -> list[str]:
    """served_by of one request per session, 16 at a time (the student batches them)."""
    aclient = openai.AsyncOpenAI(
        base_url=running.base_url, api_key=CLIENT_KEY, max_retries=0, timeout=30
    )
    gate = asyncio.Semaphore(16)

    async def one(i: int, session: str) -> str:
        async with gate:
            raw = await aclient.chat.completions.with_raw_response.create(
                model="triage",
                messages=ask(PROMPTS[i % len(PROMPTS)]),
                max_tokens=max_tokens,
                extra_headers={"x-apprentice-session": session},
            )
            assert content(raw.parse())
            return raw.headers[SERVED_BY]

    try:
        return await asyncio.gather(*(one(i, s) for i, s in enumerate(sessions)))
    finally:
        await aclient.close()


def test_weight_50_splits_sessions_and_keeps_each_session_sticky(
    student_dir: Path, teacher: FakeTeacher
) -> None:
    config = routing_config(
        student_dir, teacher, holdout_share=0.0, shadow_share=0.0, confidence_floor=None
    )
    with RunningProxy(config) as running:
        admin(running, "POST", "/canary/triage/set-weight", {"version": "v1", "weight": 50})
        served = asyncio.run(_send_sessions(running, [f"user-{i}" for i in range(200)]))
        assert set(served) == {"student:v1", "teacher"}
        share = served.count("student:v1") / len(served)
        assert 0.35 <= share <= 0.65, share
        # The same session, again and again, stays with the same model.
        for session in ("user-0", "user-1", "user-2", "user-3"):
            again = asyncio.run(_send_sessions(running, [session] * 10))
            assert again == [served[int(session.split("-")[1])]] * 10, session
        assert metric(
            running, "apprentice_requests_total", route="triage", served_by="student"
        ) == served.count("student:v1") + 10 * sum(served[i] == "student:v1" for i in range(4))


# -- shadow --------------------------------------------------------------------------------


def test_shadow_never_delays_the_client(student_dir: Path, teacher: FakeTeacher) -> None:
    # Every student answer waits out a 300 ms batch window; teacher answers take milliseconds.
    config = routing_config(
        student_dir,
        teacher,
        students={"batch_window_ms": 300},
        shadow_share=1.0,
        holdout_share=0.0,
        confidence_floor=None,
    )
    with RunningProxy(config) as running:
        snap = admin(running, "POST", "/canary/triage/start", {"version": "v1"})
        assert (snap["state"], snap["weights"]) == ("shadow", {})
        c = client(running)

        def compared() -> float:
            return metric(running, "apprentice_shadow_comparisons_total", route="triage")

        # Warm up: the first shadow loads the student; wait until it has answered once.
        c.chat.completions.create(model="triage", messages=ask(PROMPTS[0]))
        wait_for(compared, 30, "the first shadow comparison")
        durations, ids = [], []
        for i, text in enumerate(PROMPTS[1:9]):
            t0 = time.perf_counter()
            raw = c.chat.completions.with_raw_response.create(
                model="triage", messages=ask(text), extra_headers={"x-apprentice-session": f"{i}"}
            )
            durations.append(time.perf_counter() - t0)
            assert raw.headers[SERVED_BY] == "teacher"
            assert content(raw.parse()) == f"echo: {text}"
            ids.append(raw.headers["x-apprentice-request-id"])
        assert max(durations) < 0.3, durations
        assert statistics.median(durations) < 0.15, durations
        wait_for(lambda: compared() >= 9, 30, "nine shadow comparisons")
        verdicts = {
            v: metric(running, "apprentice_shadow_comparisons_total", route="triage", verdict=v)
            for v in ("agree", "disagree", "error")
        }
        assert sum(verdicts.values()) == 9 and verdicts["error"] == 0, verdicts
    rows = logged(running)
    teacher_rows = {r["request_id"]: r for r in rows if r["served_by"] == "teacher"}
    shadows = [r for r in rows if r["tags"].get("shadow")]
    assert len(teacher_rows) == 9 and len(shadows) == 9
    for request_id in ids:
        row = teacher_rows[request_id]
        assert row["shadow_pair_id"] and row["latency_ms"] < 300
        (pair,) = [s for s in shadows if s["shadow_pair_id"] == row["shadow_pair_id"]]
        assert pair["served_by"] == "student:v1" and pair["outcome"] == "ok"
        assert pair["tags"]["teacher_request_id"] == request_id
        assert pair["tags"]["student_latency_ms"] >= 300 > pair["tags"]["teacher_latency_ms"]
        assert pair["tags"]["verdict"] in ("agree", "disagree")
        assert pair["cost_usd"] is None and json.loads(pair["response"])["choices"]


# -- fallbacks -----------------------------------------------------------------------------


def test_low_confidence_falls_back_and_unsupported_requests_bypass(
    student_dir: Path, teacher: FakeTeacher
) -> None:
    # A floor of 0.0: no real answer is that sure, so every one goes to the teacher.
    config = routing_config(student_dir, teacher, confidence_floor=0.0, holdout_share=0.0)
    with RunningProxy(config) as running:
        admin(running, "POST", "/canary/triage/set-weight", {"version": "v1", "weight": 100})
        c = client(running)
        for i in range(3):
            raw = c.chat.completions.with_raw_response.create(
                model="triage", messages=ask(PROMPTS[i])
            )
            assert raw.headers[SERVED_BY] == "teacher"
            assert content(raw.parse()) == f"echo: {PROMPTS[i]}"
        stream = c.chat.completions.create(model="triage", messages=ask(PROMPTS[3]), stream=True)
        streamed = "".join(ch.choices[0].delta.content or "" for ch in stream if ch.choices)
        assert streamed == f"echo: {PROMPTS[3]}"
        assert (
            metric(running, "apprentice_fallbacks_total", route="triage", reason="low_confidence")
            == 4
        )

        weather = {
            "type": "function",
            "function": {"name": "get_weather", "parameters": {"type": "object"}},
        }
        tools = c.chat.completions.with_raw_response.create(
            model="triage",
            messages=[{"role": "user", "content": "weather in Paris?"}],
            tools=[weather],  # type: ignore[list-item]
        )
        assert tools.headers[SERVED_BY] == "teacher"
        assert tools.parse().choices[0].message.tool_calls
        two = c.chat.completions.with_raw_response.create(
            model="triage", messages=ask(PROMPTS[4]), n=2
        )
        assert two.headers[SERVED_BY] == "teacher" and len(two.parse().choices) == 2
        bypassed = "apprentice_student_bypassed_total"
        assert metric(running, bypassed, route="triage", reason="tools") == 1
        assert metric(running, bypassed, route="triage", reason="n>1") == 1
        assert metric(running, "apprentice_fallbacks_total", route="triage") == 4
        assert (
            metric(running, "apprentice_requests_total", route="triage", served_by="student") == 0
        )
    rows = logged(running)
    assert len(rows) == 6 and {r["served_by"] for r in rows} == {"teacher"}
    assert all(r["outcome"] == "ok" for r in rows)
    fallbacks = [r["tags"] for r in rows if r["tags"]]
    assert fallbacks == [{"fallback": "low_confidence", "student": "v1"}] * 4


def test_slow_student_falls_back_on_timeout(student_dir: Path, teacher: FakeTeacher) -> None:
    config = routing_config(
        student_dir, teacher, student_timeout_s=0.001, confidence_floor=None, holdout_share=0.0
    )
    with RunningProxy(config) as running:
        admin(running, "POST", "/canary/triage/set-weight", {"version": "v1", "weight": 100})
        c = client(running)
        for text in PROMPTS[:3]:
            raw = c.chat.completions.with_raw_response.create(model="triage", messages=ask(text))
            assert raw.headers[SERVED_BY] == "teacher"
            assert content(raw.parse()) == f"echo: {text}"
        assert metric(running, "apprentice_fallbacks_total", route="triage", reason="timeout") == 3
    rows = logged(running)
    assert [r["tags"] for r in rows] == [{"fallback": "timeout", "student": "v1"}] * 3


# -- the controller ------------------------------------------------------------------------

CONTROLLER = dict(
    interval_s=1.0,
    steps=[50, 100],
    min_requests=5,
    min_shadow_pairs=5,
    min_agreement=0.0,  # the quick student is not accurate; this test is about the machinery
    max_latency_factor=1000.0,
    max_fallback_ratio=1.0,
    confidence_floor=None,
    shadow_share=1.0,
    holdout_share=0.5,  # at 100% only holdout pairs measure agreement: enough of them
)


def drive(
    running: RunningProxy,
    until: Callable[[dict[str, Any]], bool],
    timeout: float,
    request: Callable[[int], dict[str, Any]],
    on_answer: Callable[[dict[str, Any], str], None] = lambda *_: None,
) -> tuple[dict[str, Any], list[tuple[str, Any]]]:
    """Send requests (a new session each) until the canary snapshot satisfies `until`.

    Returns that snapshot and (served_by, parsed answer) of every request sent."""
    c = client(running)
    seen: list[tuple[str, Any]] = []
    deadline = time.monotonic() + timeout
    i = 0
    while True:
        raw = c.chat.completions.with_raw_response.create(
            **request(i), extra_headers={"x-apprentice-session": f"drive-{i}"}
        )
        assert raw.status_code == 200
        seen.append((raw.headers[SERVED_BY], raw.parse()))
        i += 1
        snap = canary(running)
        on_answer(snap, raw.headers[SERVED_BY])
        if until(snap):
            return snap, seen
        if time.monotonic() > deadline:
            raise AssertionError(f"canary still {snap['state']} after {timeout}s: {snap}")


def test_controller_promotes_on_its_own_and_survives_a_restart(
    student_dir: Path, teacher: FakeTeacher
) -> None:
    config = routing_config(student_dir, teacher, **CONTROLLER)
    with RunningProxy(config) as running:
        admin(running, "POST", "/canary/triage/start", {"version": "v1"})
        snap, seen = drive(
            running,
            lambda s: s["state"] in ("promoted", "rolled_back", "paused"),
            60,
            lambda i: {
                "model": "triage",
                "messages": ask(PROMPTS[i % len(PROMPTS)]),
                "max_tokens": 8,
            },
        )
        assert snap["state"] == "promoted", snap
        assert (snap["version"], snap["current"], snap["weights"]) == ("v1", "v1", {"v1": 100})
        assert {served for served, _ in seen} == {"teacher", "student:v1"}
        moves = [
            (t["from_state"], t["to_state"], t["weight"], t["reason"]) for t in snap["history"]
        ]
        assert moves == [
            ("idle", "shadow", 0, "manual"),
            ("shadow", "canary", 50, "checks_passed"),
            ("canary", "canary", 100, "checks_passed"),
            ("canary", "promoted", 100, "checks_passed"),
        ]
        for t in snap["history"][1:]:
            assert {c["name"] for c in t["checks"]} >= {"agreement"}
            assert all(c["status"] in ("pass", "skipped") for c in t["checks"]), t
        last = {c["name"]: c for c in snap["history"][-1]["checks"]}
        assert last["fallback_ratio"]["status"] == "pass"
        assert last["fallback_ratio"]["value"] == 0.0
        assert metric(running, "apprentice_canary_state", route="triage", state="promoted") == 1
        assert metric(running, "apprentice_canary_weight_ratio", route="triage") == 1
        assert metric(running, "apprentice_canary_transitions_total", route="triage") == 4
        before = canary(running)

    # A new server on the same data_dir goes on where this one stopped.
    with RunningProxy(config) as again:
        after = canary(again)
        # The same state; the control plane's write counter may have moved on (the stop
        # persists the last snapshot again).
        assert after.pop("revision") >= before.pop("revision")
        assert after == before
        assert metric(again, "apprentice_canary_state", route="triage", state="promoted") == 1
        raw = client(again).chat.completions.with_raw_response.create(
            model="triage",
            messages=ask(PROMPTS[0]),
            extra_headers={"x-apprentice-session": "after-restart-0"},
        )
        # The restored weights route to v1 (holdout_share=0.5 may still send this one
        # request to the teacher; either way it is answered).
        assert again.app.state.proxy.router.choose("triage", "any-session") == "v1"
        assert raw.headers[SERVED_BY] in ("student:v1", "teacher") and content(raw.parse())


class Breakable:
    """The loaded student, until `broken` is set: then its answers stop being JSON (fault
    injection at the student's outside edge, as a corrupt adapter would behave)."""

    def __init__(self, real: InProcessStudent) -> None:
        self.real, self.broken = real, False

    def supports(self, payload: dict[str, Any]) -> str | None:
        return self.real.supports(payload)

    async def complete(self, payload: dict[str, Any]) -> StudentResult:
        result = await self.real.complete(payload)
        if not self.broken:
            return result
        response = copy.deepcopy(result.response)
        response["choices"][0]["message"]["content"] = "Sorry, I cannot answer in JSON."
        return StudentResult(response, result.mean_logprob, result.latency_s)

    def close(self) -> None:
        self.real.close()


@pytest.fixture(scope="module")
def json_prompts(student_data: tuple[Path, int]) -> list[str]:
    """Prompts the healthy student answers with valid JSON (about half of them: it is tiny)."""
    data_dir, version = student_data
    student = InProcessStudent.load(
        data_dir / "students" / "triage" / f"v{version}",
        name="triage",
        version=version,
        settings=StudentSettings(max_tokens=32),
    )

    async def answers() -> list[StudentResult]:
        asks = [{"model": "triage", "messages": ask(p)} for p in PROMPTS]
        return await asyncio.gather(*(student.complete(a) for a in asks))

    good = []
    try:
        for prompt, result in zip(PROMPTS, asyncio.run(answers()), strict=True):
            try:
                json.loads(result.response["choices"][0]["message"]["content"])
            except ValueError:
                continue
            good.append(prompt)
    finally:
        student.close()
    assert len(good) >= 5, "the quick student should answer some prompts with JSON"
    return good


def test_student_broken_mid_canary_is_rolled_back_and_no_client_sees_an_error(
    student_dir: Path, teacher: FakeTeacher, json_prompts: list[str]
) -> None:
    config = routing_config(student_dir, teacher, **(CONTROLLER | {"max_fallback_ratio": 0.2}))
    with RunningProxy(config) as running:
        pool = running.app.state.proxy.students
        student = Breakable(pool._load("triage", 1))
        pool._students[("triage", 1)] = student  # what the pool hands out from now on

        def request(i: int) -> dict[str, Any]:
            return {
                "model": "triage",
                "messages": ask(json_prompts[i % len(json_prompts)]),
                "response_format": {"type": "json_object"},
            }

        healthy_fallbacks: list[float] = []

        def break_in_canary(snap: dict[str, Any], served_by: str) -> None:
            # Once the canary serves clients and the student has answered one of them.
            if snap["state"] == "canary" and served_by == "student:v1" and not student.broken:
                healthy_fallbacks.append(metric(running, "apprentice_fallbacks_total"))
                student.broken = True

        admin(running, "POST", "/canary/triage/start", {"version": "v1"})
        snap, seen = drive(
            running,
            lambda s: s["state"] in ("rolled_back", "promoted"),
            60,
            request,
            break_in_canary,
        )
        assert student.broken, "the canary never reached a canary step"
        assert healthy_fallbacks == [0], "the healthy student already fell back"
        assert snap["state"] == "rolled_back", snap
        assert snap["weights"] == {} and snap["current"] is None
        moves = [(t["from_state"], t["to_state"], t["reason"]) for t in snap["history"]]
        assert moves[:2] == [("idle", "shadow", "manual"), ("shadow", "canary", "checks_passed")]
        assert moves[-1] == ("canary", "rolled_back", "fallback_ratio")
        failed = [c for c in snap["history"][-1]["checks"] if c["status"] == "fail"]
        assert [c["name"] for c in failed] == ["fallback_ratio"]
        assert failed[0]["value"] > 0.2

        # Every client got a 200 with valid JSON, from the student before the break and
        # from the teacher (via fallback) after it.
        for _, answer in seen:
            json.loads(content(answer))
        assert "student:v1" in {served for served, _ in seen}
        invalid = metric(
            running, "apprentice_fallbacks_total", route="triage", reason="invalid_json"
        )
        assert invalid >= 1
        assert (
            metric(
                running,
                "apprentice_canary_transitions_total",
                route="triage",
                to_state="rolled_back",
                reason="fallback_ratio",
            )
            == 1
        )
        # After the rollback the teacher serves everything.
        raw = client(running).chat.completions.with_raw_response.create(**request(0))
        assert raw.headers[SERVED_BY] == "teacher"
    rows = logged(running)
    tagged = [r for r in rows if r["tags"].get("fallback")]
    assert len(tagged) == invalid
    assert all(r["served_by"] == "teacher" and r["outcome"] == "ok" for r in tagged)
    assert {r["tags"]["fallback"] for r in tagged} == {"invalid_json"}


def test_students_serve_the_responses_api_and_anthropic_messages_by_translation(
    student_dir: Path, teacher: FakeTeacher
) -> None:
    config = routing_config(
        student_dir, teacher, holdout_share=0.0, shadow_share=0.0, confidence_floor=None
    )
    with RunningProxy(config) as running:
        admin(running, "POST", "/canary/triage/set-weight", {"version": "v1", "weight": 100})
        sdk = client(running)
        chat = content(sdk.chat.completions.create(model="triage", messages=ask(PROMPTS[1])))
        responses = client(running).responses.with_raw_response.create(
            model="triage", instructions=SYSTEM, input=PROMPTS[1]
        )
        assert responses.headers[SERVED_BY] == "student:v1"
        assert responses.parse().output_text == chat  # the same student answer, in its shape
        events = list(client(running).responses.create(
            model="triage", instructions=SYSTEM, input=PROMPTS[1], stream=True))  # fmt: skip
        # Completed, or incomplete when the student hit its token cap (as OpenAI says it).
        assert events[-1].type in ("response.completed", "response.incomplete")
        assert events[-1].response.output_text == chat  # type: ignore[union-attr]
        deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
        assert "".join(deltas) == chat
        messages = anthropic.Anthropic(base_url=running.url, api_key=CLIENT_KEY, max_retries=0)
        answer = messages.messages.with_raw_response.create(
            model="triage", max_tokens=32, system=SYSTEM,
            messages=[{"role": "user", "content": PROMPTS[1]}],
        )  # fmt: skip
        assert answer.headers[SERVED_BY] == "student:v1"
        assert answer.parse().content[0].text == chat  # type: ignore[union-attr]
        stateful = httpx.post(
            f"{running.base_url}/responses", headers={"authorization": f"Bearer {CLIENT_KEY}"},
            json={"model": "triage", "input": PROMPTS[1], "previous_response_id": "resp_gone"},
        )  # fmt: skip
        # Server-side state lives at the teacher: it answers (here: it knows no such response).
        assert stateful.headers[SERVED_BY] == "teacher" and stateful.status_code == 400
        assert metric(running, "apprentice_student_bypassed_total", reason="server_state") == 1
    rows = logged(running)
    assert [(r["endpoint"], r["served_by"]) for r in rows] == [
        ("chat/completions", "student:v1"), ("responses", "student:v1"),
        ("responses", "student:v1"), ("messages", "student:v1"), ("responses", "teacher"),
    ]  # fmt: skip
