"""Metrics helpers that keep state-set and info gauges consistent."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from monitoring.metrics import CANARY_STATES, Metrics


@pytest.fixture
def metrics() -> Metrics:
    return Metrics(CollectorRegistry())


def value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_canary_state_is_one_hot(metrics: Metrics) -> None:
    metrics.set_canary_state("r", "shadow")
    metrics.set_canary_state("r", "rolled_back")
    values = {
        s: value(metrics, "apprentice_canary_state", route="r", state=s) for s in CANARY_STATES
    }
    assert values == {s: (1.0 if s == "rolled_back" else 0.0) for s in CANARY_STATES}
    with pytest.raises(ValueError, match="unknown canary state"):
        metrics.set_canary_state("r", "sideways")


def test_student_info_keeps_one_version_per_route(metrics: Metrics) -> None:
    metrics.set_student("r", "v1", "tiny")
    metrics.set_student("other", "v1", "tiny")
    metrics.set_student("r", "v2", "tiny")
    assert value(metrics, "apprentice_student_info", route="r", version="v1", base="tiny") is None
    assert value(metrics, "apprentice_student_info", route="r", version="v2", base="tiny") == 1
    assert value(metrics, "apprentice_student_info", route="other", version="v1", base="tiny") == 1


def test_retrain_failure_streak_resets_on_any_other_outcome(metrics: Metrics) -> None:
    for outcome in ("failed", "failed"):
        metrics.record_retrain("r", outcome, finished_at=100.0)
    assert value(metrics, "apprentice_retrain_consecutive_failures", route="r") == 2
    metrics.record_retrain("r", "rejected", finished_at=200.0)
    assert value(metrics, "apprentice_retrain_consecutive_failures", route="r") == 0
    assert value(metrics, "apprentice_retrain_runs_total", route="r", outcome="failed") == 2
    assert value(metrics, "apprentice_retrain_last_run_timestamp_seconds", route="r") == 200


def test_render_is_prometheus_text(metrics: Metrics) -> None:
    metrics.requests.labels("r", "teacher", "ok").inc()
    text = metrics.render().decode()
    assert 'apprentice_requests_total{outcome="ok",route="r",served_by="teacher"} 1.0' in text
