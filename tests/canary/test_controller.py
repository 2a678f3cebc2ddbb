"""The canary state machine, driven by a fake clock: steps, checks, manual controls, snapshots."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from canary.controller import CanaryController, CanaryError, IntervalStats, Transition
from canary.settings import CanarySettings
from monitoring.metrics import Metrics

# Enough traffic on both sides, and a student as good as the teacher.
GOOD = IntervalStats(
    student_requests=100,
    student_errors=1,
    teacher_requests=100,
    teacher_errors=1,
    student_p95_s=1.0,
    teacher_p95_s=1.0,
    shadow_agree=95,
    shadow_disagree=4,
    shadow_errors=1,
    fallbacks=5,
    drift_scores={"token_jsd": 0.05},
    drift_act={"token_jsd": 0.2},
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def metrics() -> Metrics:
    return Metrics(CollectorRegistry())


def controller(
    clock: FakeClock, metrics: Metrics | None = None, **settings: object
) -> CanaryController:
    return CanaryController(
        "r", CanarySettings.model_validate(settings), clock=clock, metrics=metrics
    )


def interval(ctl: CanaryController, clock: FakeClock, stats: IntervalStats = GOOD) -> str:
    clock.now += 60
    return ctl.evaluate(stats).action


def sample(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_walks_through_every_step_to_promotion(clock: FakeClock, metrics: Metrics) -> None:
    seen: list[Transition] = []
    ctl = controller(clock, metrics)
    ctl.on_transition = lambda c, t: seen.append(t)
    ctl.start("v1")
    assert (ctl.state, ctl.weight(), ctl.shadow_share(), ctl.holdout_share()) == (
        "shadow",
        0,
        1.0,
        0.0,
    )
    weights = []
    for _ in range(5):
        assert interval(ctl, clock) == "advance"
        weights.append((ctl.state, ctl.step, ctl.weight()))
    assert weights == [
        ("canary", 0, 5), ("canary", 1, 25), ("canary", 2, 50), ("canary", 3, 100),
        ("promoted", None, 100),
    ]  # fmt: skip
    # promoted keeps a holdout going to the teacher and stops moving
    assert ctl.weights() == {"v1": 100} and ctl.holdout_share() == 0.05 and ctl.shadow_share() == 0
    assert interval(ctl, clock) == "none"
    assert [t.reason for t in seen] == ["manual"] + ["checks_passed"] * 5
    assert seen == ctl.history
    assert sample(metrics, "apprentice_canary_state", route="r", state="promoted") == 1
    assert sample(metrics, "apprentice_canary_state", route="r", state="canary") == 0
    assert sample(metrics, "apprentice_canary_weight_ratio", route="r") == 1.0
    labels = {"route": "r", "from_state": "canary", "to_state": "canary", "reason": "checks_passed"}
    assert sample(metrics, "apprentice_canary_transitions_total", **labels) == 3


def test_shadow_is_judged_on_agreement_only(clock: FakeClock) -> None:
    ctl = controller(clock)
    ctl.start("v1")
    slow_and_failing = replace(GOOD, student_p95_s=60.0, student_errors=90, fallbacks=90)
    assert interval(ctl, clock, slow_and_failing) == "advance"
    assert [c.name for c in ctl.last_decision.checks] == ["agreement"]  # type: ignore[union-attr]
    assert interval(ctl, clock, slow_and_failing) == "rollback"


@pytest.mark.parametrize(
    ("stats", "settings", "reason", "detail"),
    [
        (replace(GOOD, shadow_agree=79, shadow_disagree=20), {}, "agreement", "0.790 < 0.900"),
        (replace(GOOD, student_errors=4), {}, "error_ratio", "0.040 > 0.030"),
        (replace(GOOD, student_p95_s=2.5), {}, "latency", "2.500 > 2.000"),
        (replace(GOOD, fallbacks=30), {}, "fallback_ratio", "0.300 > 0.200"),
        (replace(GOOD, drift_scores={"token_jsd": 0.3}), {}, "drift", "token_jsd 0.300 > 0.200"),
        (GOOD, {"max_drift": {"token_jsd": 0.01}}, "drift", "token_jsd 0.050 > 0.010"),
    ],
)
def test_a_failed_check_rolls_back_at_once(
    clock: FakeClock, metrics: Metrics, stats: IntervalStats, settings: dict[str, object],
    reason: str, detail: str,
) -> None:  # fmt: skip
    ctl = controller(clock, metrics, **settings)
    ctl.start("v1")
    ctl.set_weight("v1", 25)
    clock.now += 60
    decision = ctl.evaluate(stats)
    assert decision.action == "rollback" and decision.transition is not None
    assert decision.transition.reason == reason and detail in decision.transition.detail
    failed = [c for c in decision.checks if c.status == "fail"]
    assert len(failed) == 1 and failed[0].name.split(":")[0] == reason
    assert failed[0].value is not None and failed[0].threshold is not None
    assert (ctl.state, ctl.weight(), ctl.weights(), ctl.shadow_share()) == ("rolled_back", 0, {}, 0)
    labels = {"route": "r", "from_state": "canary", "to_state": "rolled_back", "reason": reason}
    assert sample(metrics, "apprentice_canary_transitions_total", **labels) == 1
    assert interval(ctl, clock) == "none"


def test_agreement_under_the_bar_within_noise_waits_for_more_pairs(clock: FakeClock) -> None:
    # 8 of 10 is under 0.9, but a student agreeing 90% of the time scores 8 of 10 or less a
    # quarter of the time: the interval goes on until the pairs decide, either way.
    ctl = controller(clock, min_shadow_pairs=10)
    ctl.start("v1")
    noisy = replace(GOOD, shadow_agree=8, shadow_disagree=2, shadow_errors=0)
    assert interval(ctl, clock, noisy) == "hold"
    assert ctl.state == "shadow" and "within noise" in ctl.last_decision.reason  # type: ignore[union-attr]
    assert interval(ctl, clock, replace(noisy, shadow_agree=27, shadow_disagree=3)) == "advance"
    other = controller(clock, min_shadow_pairs=10)
    other.start("v2")
    assert interval(other, clock, replace(noisy, shadow_agree=4, shadow_disagree=6)) == "rollback"
    third = controller(clock, min_shadow_pairs=10)
    third.start("v3")  # 40 of 50 (0.8) is no longer noise: its upper bound is 0.88
    assert interval(third, clock, replace(noisy, shadow_agree=40, shadow_disagree=10)) == "rollback"


def test_too_little_traffic_waits_then_goes_on(clock: FakeClock) -> None:
    ctl = controller(clock)
    ctl.start("v1")
    ctl.set_weight("v1", 5)
    clock.now += 60
    decision = ctl.evaluate(replace(GOOD, student_requests=3, student_errors=3, fallbacks=3))
    assert decision.action == "hold" and "3 student requests, fewer than the 20" in decision.reason
    assert (ctl.state, ctl.weight()) == ("canary", 5)
    few_pairs = replace(GOOD, shadow_agree=1, shadow_disagree=9, shadow_errors=0)
    assert (
        ctl.evaluate(few_pairs).reason
        == "inconclusive: 10 compared pairs, fewer than the 20 needed"
    )
    assert interval(ctl, clock) == "advance" and ctl.weight() == 25


def test_a_step_is_judged_only_after_half_an_interval(clock: FakeClock) -> None:
    ctl = controller(clock)
    ctl.start("v1")
    clock.now += 29
    assert ctl.evaluate(GOOD).action == "hold" and ctl.state == "shadow"
    clock.now += 1
    assert ctl.evaluate(GOOD).action == "advance"


def test_unknown_teacher_latency_skips_the_latency_check(clock: FakeClock) -> None:
    ctl = controller(clock)
    ctl.set_weight("v1", 50)
    assert interval(ctl, clock, replace(GOOD, teacher_p95_s=None, student_p95_s=99.0)) == "advance"
    latency = [c for c in ctl.last_decision.checks if c.name == "latency"]  # type: ignore[union-attr]
    assert latency[0].status == "skipped"


def test_pause_freezes_and_resume_goes_on(clock: FakeClock, metrics: Metrics) -> None:
    ctl = controller(clock, metrics)
    ctl.set_weight("v1", 25)
    ctl.pause()
    assert (ctl.state, ctl.weight(), ctl.step, ctl.shadow_share()) == ("paused", 25, 1, 1.0)
    assert interval(ctl, clock, replace(GOOD, shadow_agree=0)) == "none"
    assert sample(metrics, "apprentice_canary_state", route="r", state="paused") == 1
    ctl.resume()
    assert (ctl.state, ctl.weight(), ctl.step) == ("canary", 25, 1)
    assert ctl.evaluate(GOOD).action == "hold"  # the resumed step starts afresh
    assert interval(ctl, clock) == "advance" and ctl.weight() == 50


def test_manual_controls(clock: FakeClock) -> None:
    ctl = controller(clock)
    ctl.start("v1")
    ctl.set_weight("v1", 30)  # between steps: the next step is the next larger one
    assert (ctl.state, ctl.step, ctl.weights()) == ("canary", 1, {"v1": 30})
    assert interval(ctl, clock) == "advance" and ctl.weight() == 50
    ctl.promote()
    assert (ctl.state, ctl.current, ctl.weight()) == ("promoted", "v1", 100)
    # a new candidate is judged while the promoted one serves the rest
    ctl.start("v2")
    ctl.set_weight("v2", 10)
    assert ctl.weights() == {"v2": 10, "v1": 90} and ctl.holdout_share() == 0.05
    ctl.promote()
    assert ctl.weights() == {"v2": 100}
    # a promoted student can still be rolled back, e.g. when drift acts
    move = ctl.rollback("drift token_jsd 0.400 > 0.200", reason="drift")
    assert (move.from_state, move.to_state, move.reason) == ("promoted", "rolled_back", "drift")
    assert (ctl.state, ctl.weights(), ctl.current) == ("rolled_back", {}, None)
    ctl.set_weight("v3", 0)
    assert (ctl.state, ctl.candidate) == ("shadow", "v3")


@pytest.mark.parametrize("pct", [-1, 101, 2.5, True, "50"])
def test_weight_outside_0_to_100_is_refused(clock: FakeClock, pct: object) -> None:
    with pytest.raises(CanaryError, match="whole percent from 0 to 100"):
        controller(clock).set_weight("v1", pct)  # type: ignore[arg-type]


def test_controls_that_do_not_apply_are_refused(clock: FakeClock) -> None:
    ctl = controller(clock)
    for control, message in [
        (ctl.pause, "is idle; there is nothing to pause"),
        (ctl.resume, "nothing to resume"),
        (ctl.promote, "nothing to promote"),
        (ctl.rollback, "nothing to roll back"),
    ]:
        with pytest.raises(CanaryError, match=message):
            control()
    ctl.start("v1")
    with pytest.raises(CanaryError, match="already judging 'v1'"):
        ctl.start("v2")
    with pytest.raises(CanaryError, match="already judging 'v1'"):
        ctl.set_weight("v2", 5)
    ctl.start("v2", force=True)
    assert (ctl.state, ctl.candidate) == ("shadow", "v2")
    assert [t.to_state for t in ctl.history] == ["shadow", "shadow"]


def test_snapshot_is_json_and_restores_identically(clock: FakeClock, metrics: Metrics) -> None:
    ctl = controller(clock)
    ctl.start("v1")
    interval(ctl, clock)
    ctl.pause()
    snapshot = json.loads(json.dumps(ctl.snapshot()))
    assert snapshot["state"] == "paused" and snapshot["version"] == "v1"
    assert snapshot["last_checks"][0]["name"] == "agreement"
    assert [t["to_state"] for t in snapshot["history"]] == ["shadow", "canary", "paused"]
    restored = CanaryController.from_snapshot(snapshot, ctl.settings, clock=clock, metrics=metrics)
    assert restored.snapshot() == ctl.snapshot()
    assert sample(metrics, "apprentice_canary_state", route="r", state="paused") == 1
    assert sample(metrics, "apprentice_canary_weight_ratio", route="r") == 0.05
    with pytest.raises(CanaryError, match="snapshot version"):
        CanaryController.from_snapshot({**snapshot, "snapshot_version": 9}, ctl.settings)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"steps": []}, "at least one step"),
        ({"steps": [25, 5]}, "rise strictly"),
        ({"steps": [0, 50]}, "between 1 and 100"),
        ({"max_drift": {"psi": 0.1}}, "unknown method"),
        ({"min_agreement": 1.5}, "less than or equal"),
        ({"confidence_floor": -1.0}, "Extra inputs"),  # a serving setting: on the route
        ({"steps_typo": [5]}, "Extra inputs"),
    ],
)
def test_settings_reject_nonsense(values: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        CanarySettings.model_validate(values)


def test_a_calibrated_cascade_defers_without_failing_the_fallback_check() -> None:
    from canary.controller import judge
    from canary.settings import CanarySettings

    settings = CanarySettings()
    base = IntervalStats(student_requests=100, teacher_requests=100, shadow_agree=50,
                         fallbacks=5, deferred=35)  # fmt: skip
    # no calibrated rule: low-confidence answers are fallbacks, and 40% of them fail the check
    checks = {c.name: c for c in judge(base, settings, shadow=False)}
    assert checks["fallback_ratio"].status == "fail" and checks["fallback_ratio"].value == 0.4
    # a calibrated cascade defers by design: only the 5% failures count
    checks = {c.name: c for c in judge(replace(base, calibrated=True), settings, shadow=False)}
    assert checks["fallback_ratio"].status == "pass" and checks["fallback_ratio"].value == 0.05
