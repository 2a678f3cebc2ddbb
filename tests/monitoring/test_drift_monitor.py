"""The drift job: windows, gauges, thresholds and actions, driven by a fake clock."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from monitoring.drift import build_reference
from monitoring.drift_monitor import DriftMonitor
from monitoring.metrics import Metrics
from monitoring.settings import DriftSettings

# 6 to 10 tokens long, so the length histogram has several bins
REFERENCE_PROMPTS = [
    f"please summarise ticket {i} about billing" + " urgently" * (i % 5) for i in range(200)
]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def ask(text: str) -> list[dict[str, str]]:
    """A request's messages, as the proxy hands them over."""
    return [{"role": "system", "content": "You help."}, {"role": "user", "content": text}]


def gauge(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


@pytest.fixture
def metrics() -> Metrics:
    return Metrics(CollectorRegistry())


def monitor_for(metrics: Metrics, clock: FakeClock, **settings: object) -> DriftMonitor:
    defaults: dict[str, object] = {"window_size": 100, "min_prompts": 20, "min_shadow_pairs": 10}
    drift = DriftSettings.model_validate(defaults | settings)
    monitor = DriftMonitor(metrics, {"r": drift}, clock=clock)
    monitor.set_reference("r", build_reference(REFERENCE_PROMPTS))
    return monitor


def test_scores_move_when_traffic_changes(metrics: Metrics) -> None:
    monitor = monitor_for(metrics, FakeClock())
    for prompt in REFERENCE_PROMPTS[::2]:
        monitor.observe_prompt("r", ask(prompt))
    same = monitor.evaluate("r")
    assert same is not None and set(same.levels.values()) == {"ok"}
    # only the ticket numbers differ from the reference
    assert same.scores["token_jsd"] < 0.1
    assert (
        gauge(metrics, "apprentice_drift_score", route="r", method="token_jsd")
        == (same.scores["token_jsd"])
    )
    assert gauge(metrics, "apprentice_drift_window_prompts", route="r") == 100

    # the window slides: 100 prompts about something else push every old one out
    for _ in range(100):
        monitor.observe_prompt("r", ask("translate into german"))
    moved = monitor.evaluate("r")
    assert moved is not None
    assert moved.scores["unseen_token_rate"] > 0.9
    assert moved.scores["token_jsd"] > 0.9
    assert moved.scores["prompt_length_psi"] > 0.25
    assert moved.levels["token_jsd"] == "act"
    assert moved.pause_canary and not moved.trigger_retrain
    assert gauge(metrics, "apprentice_drift_score", route="r", method="token_jsd") == pytest.approx(
        moved.scores["token_jsd"]
    )


def test_no_scores_until_the_window_has_enough_prompts(metrics: Metrics) -> None:
    clock = FakeClock()
    monitor = monitor_for(metrics, clock)
    monitor.observe_prompt("r", ask("hello"))
    report = monitor.evaluate("r")
    assert report is not None and report.scores == {}
    assert gauge(metrics, "apprentice_drift_score", route="r", method="token_jsd") is None
    assert gauge(metrics, "apprentice_drift_last_run_timestamp_seconds", route="r") == clock.now


def test_disagreement_is_scored_from_shadow_verdicts(metrics: Metrics) -> None:
    monitor = monitor_for(metrics, FakeClock(), trigger_retrain=True, pause_canary=False)
    for verdict in ["agree"] * 6 + ["disagree"] * 4 + ["error"] * 5:
        monitor.observe_shadow("r", verdict)
    report = monitor.evaluate("r")
    assert report is not None
    assert report.scores == {"disagreement_rate": pytest.approx(0.4)}
    assert report.acting == ["disagreement_rate"]
    assert report.trigger_retrain and not report.pause_canary


def test_output_length_psi_needs_an_output_reference(metrics: Metrics) -> None:
    monitor = monitor_for(metrics, FakeClock())
    for _ in range(30):
        monitor.observe_output("r", "a short answer")
    report = monitor.evaluate("r")
    assert report is not None and "output_length_psi" not in report.scores
    monitor.set_reference("r", build_reference(REFERENCE_PROMPTS, answers=["a short answer"]))
    report = monitor.evaluate("r")
    assert report is not None and report.scores["output_length_psi"] == pytest.approx(0.0)


def test_thresholds_and_interval_are_exported(metrics: Metrics) -> None:
    monitor_for(metrics, FakeClock(), psi_warn=0.2, psi_act=0.3, interval_s=30)
    assert gauge(
        metrics, "apprentice_drift_threshold", route="r", method="prompt_length_psi", level="warn"
    ) == pytest.approx(0.2)
    assert gauge(
        metrics, "apprentice_drift_threshold", route="r", method="token_jsd", level="act"
    ) == pytest.approx(0.2)
    assert gauge(metrics, "apprentice_drift_interval_seconds", route="r") == 30


def test_routes_fall_due_after_their_interval(metrics: Metrics) -> None:
    clock = FakeClock()
    monitor = monitor_for(metrics, clock, interval_s=60)
    assert monitor.due() == ["r"]
    monitor.evaluate("r")
    assert monitor.due() == []
    clock.now += 60
    assert monitor.due() == ["r"]


def test_routes_without_reference_or_disabled_are_not_scored(metrics: Metrics) -> None:
    monitor = DriftMonitor(
        metrics, {"r": DriftSettings(), "off": DriftSettings(enabled=False)}, clock=FakeClock()
    )
    monitor.observe_prompt("off", ask("ignored"))
    monitor.set_reference("off", build_reference(REFERENCE_PROMPTS))
    assert monitor.evaluate("r") is None
    assert monitor.evaluate("off") is None
    assert monitor.due() == []


def test_prompts_are_only_queued_where_requests_are_answered(metrics: Metrics) -> None:
    monitor = monitor_for(metrics, FakeClock())
    for prompt in REFERENCE_PROMPTS[:30]:
        monitor.observe_prompt("r", ask(prompt))
    monitor.observe_prompt("r", "not a message list")  # ignored when drained, never raised
    monitor.observe_prompt("unknown-route", ask("x"))  # not queued at all
    assert monitor.drain() == 30  # tokenised here, off the request path
    assert monitor.drain() == 0
    report = monitor.evaluate("r")
    assert report is not None and report.prompts == 30
