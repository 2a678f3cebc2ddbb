"""The calibrated cascade in traffic: each student's own rule from its eval.json, a route's
override, deferred answers counted and answered by the teacher, and the predicted and live
gauges side by side. The real proxy, the session's real student and the fake teacher."""

from __future__ import annotations

import asyncio
import json
import statistics
from pathlib import Path

import pytest

from proxy.settings import StudentSettings
from proxy.student_backend import InProcessStudent
from tests.fakes.teacher import FakeTeacher
from tests.proxy.test_routing import (
    PROMPTS,
    SERVED_BY,
    admin,
    ask,
    client,
    metric,
    routing_config,
    wait_for,
)
from tests.retrain.triage_task import make_rows

SIGNAL = "min_logprob"
ASKED = PROMPTS[:24]


@pytest.fixture(scope="module")
def signals(student_data: tuple[Path, int]) -> list[float]:
    """Each prompt's confidence signal, from the student answering it alone (as the proxy
    answers one request at a time)."""
    data_dir, version = student_data
    student = InProcessStudent.load(
        data_dir / "students" / "triage" / f"v{version}", name="triage", version=version,
        settings=StudentSettings(max_tokens=32),
    )  # fmt: skip

    async def one_by_one() -> list[float]:
        out = []
        for prompt in ASKED:
            result = await student.complete({"model": "triage", "messages": ask(prompt)})
            out.append(result.signals[SIGNAL])
        return out

    try:
        return asyncio.run(one_by_one())
    finally:
        student.close()


def between(values: list[float], q: float) -> float:
    """A threshold between two neighbouring distinct values, near quantile q."""
    distinct = sorted(set(values))
    i = min(len(distinct) - 1, max(1, round(q * len(distinct))))
    return (distinct[i - 1] + distinct[i]) / 2


def write_rule(data_dir: Path, threshold: float, coverage: float, agreement: float) -> None:
    path = data_dir / "students" / "triage" / "v1" / "eval.json"
    report = json.loads(path.read_text())
    report["cascade"] |= {"signal": SIGNAL, "threshold": threshold, "coverage": coverage,
                          "agreement": agreement}  # fmt: skip
    path.write_text(json.dumps(report))


def served_by(config_dir: Path, teacher: FakeTeacher, **route: object) -> list[str]:
    from tests.conftest import RunningProxy

    config = routing_config(config_dir, teacher, holdout_share=0.0, shadow_share=0.0,
                            confidence_floor=None, **route)  # fmt: skip
    with RunningProxy(config) as running:
        admin(running, "POST", "/canary/triage/set-weight", {"version": "v1", "weight": 100})
        out = []
        for i, prompt in enumerate(ASKED):
            raw = client(running).chat.completions.with_raw_response.create(
                model="triage", messages=ask(prompt),
                extra_headers={"x-apprentice-session": f"c{i}"},
            )  # fmt: skip
            assert raw.parse().choices[0].message.content  # every client gets an answer
            out.append(raw.headers[SERVED_BY])
        deferred = metric(running, "apprentice_fallbacks_total", reason="low_confidence")
        assert deferred == sum(s == "teacher" for s in out)
    return out


def test_the_students_own_rule_decides_which_answers_it_serves(
    student_dir: Path, teacher: FakeTeacher, signals: list[float]
) -> None:
    threshold = between(signals, 0.5)
    write_rule(student_dir, threshold, 0.5, 0.9)
    expected = ["student:v1" if s >= threshold else "teacher" for s in signals]
    assert 0 < expected.count("teacher") < len(expected)
    assert served_by(student_dir, teacher, cascade=True) == expected


def test_a_route_overrides_or_turns_off_the_students_rule(
    student_dir: Path, teacher: FakeTeacher, signals: list[float]
) -> None:
    write_rule(student_dir, max(signals) + 1.0, 0.0, 1.0)  # its own rule: serve nothing
    override = between(signals, 0.25)
    expected = ["student:v1" if s >= override else "teacher" for s in signals]
    got = served_by(student_dir, teacher, cascade=True, cascade_signal=SIGNAL,
                    cascade_threshold=override)  # fmt: skip
    assert got == expected
    assert set(served_by(student_dir, teacher, cascade=False)) == {"student:v1"}


def test_the_calibrated_rule_of_a_trained_student_is_applied_as_written(
    student_dir: Path, teacher: FakeTeacher
) -> None:
    """The quick session student matches the teacher on none of its eval rows, so its own
    calibration found no safe threshold: it serves nothing, and no client notices."""
    cascade = json.loads((student_dir / "students/triage/v1/eval.json").read_text())["cascade"]
    assert cascade["threshold"] is None and cascade["coverage"] == 0.0
    assert set(served_by(student_dir, teacher, cascade=True)) == {"teacher"}


def test_live_coverage_and_agreement_stand_beside_the_prediction(
    student_dir: Path, teacher: FakeTeacher, signals: list[float]
) -> None:
    from tests.conftest import RunningProxy

    threshold = between(signals, 0.5)
    write_rule(student_dir, threshold, 0.625, 0.75)
    answers = {json.loads(r["messages"])[-1]["content"]: r["answer_text"]
               for r in make_rows(60, seed=11)}  # fmt: skip
    teacher.answer = lambda body: answers[body["messages"][-1]["content"]]
    # Every request the weights give the student is held out: the teacher answers it and the
    # student is asked beside it, so each one is a live pair.
    config = routing_config(student_dir, teacher, holdout_share=1.0, shadow_share=0.0,
                            confidence_floor=None, cascade=True)  # fmt: skip
    with RunningProxy(config) as running:
        admin(running, "POST", "/canary/triage/set-weight", {"version": "v1", "weight": 100})
        for i, prompt in enumerate(ASKED):
            raw = client(running).chat.completions.with_raw_response.create(
                model="triage", messages=ask(prompt),
                extra_headers={"x-apprentice-session": f"l{i}"},
            )  # fmt: skip
            assert raw.headers[SERVED_BY] == "teacher"
        labels = {"route": "triage", "version": "v1"}
        wait_for(lambda: metric(running, "apprentice_cascade_live_pairs", **labels) == len(ASKED),
                 30, "every live pair to be compared")  # fmt: skip
        live = metric(running, "apprentice_cascade_coverage_ratio", source="live", **labels)
        predicted = metric(running, "apprentice_cascade_coverage_ratio", source="predicted",
                           **labels)  # fmt: skip
        agreement = metric(running, "apprentice_cascade_agreement_ratio", source="predicted",
                           **labels)  # fmt: skip
        pairs = {(d, v): metric(running, "apprentice_cascade_pairs_total", decision=d, verdict=v)
                 for d in ("served", "deferred") for v in ("agree", "disagree")}  # fmt: skip
    assert live == statistics.mean(s >= threshold for s in signals)
    assert (predicted, agreement) == (0.625, 0.75)  # what its eval.json says
    assert sum(pairs.values()) == len(ASKED)
    assert pairs[("served", "agree")] + pairs[("served", "disagree")] == live * len(ASKED)


def test_the_live_record_keeps_each_students_latest_pairs(tmp_path: Path) -> None:
    from prometheus_client import CollectorRegistry

    from monitoring.metrics import Metrics
    from proxy import cascade as cascade_module
    from proxy.cascade import Cascade

    metrics = Metrics(CollectorRegistry())
    live = Cascade(tmp_path, metrics)
    window = cascade_module.WINDOW
    for i in range(window + 10):  # the first ten fall out of the window
        live.record("r", "v2", served=i >= 10 and i % 2 == 0, agree=i % 4 == 0)
    labels = {"route": "r", "version": "v2"}

    def gauge(name: str, **more: str) -> float | None:
        return metrics.registry.get_sample_value(name, labels | more)

    assert gauge("apprentice_cascade_live_pairs") == window
    assert gauge("apprentice_cascade_coverage_ratio", source="live") == 0.5
    assert gauge("apprentice_cascade_agreement_ratio", source="live") == 0.5
    metrics.set_predicted_cascade("r", "v3", 0.9, 0.99)  # a new student: v2's series go
    assert gauge("apprentice_cascade_live_pairs") is None
    assert (
        metrics.registry.get_sample_value(
            "apprentice_cascade_coverage_ratio",
            {"route": "r", "version": "v3", "source": "predicted"},
        )
        == 0.9
    )
