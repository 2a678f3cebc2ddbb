from __future__ import annotations

from retrain.gate import check_gate
from retrain.settings import RetrainSettings


def test_default_gate_is_exact_match_09() -> None:
    gate = RetrainSettings().gate
    assert check_gate({"exact_match": 0.9}, gate).passed
    verdict = check_gate({"exact_match": 0.89}, gate)
    assert not verdict.passed and "below the gate's minimum 0.9" in verdict.reasons[0]


def test_latency_thresholds_are_maxima_and_unmeasured_metrics_pass() -> None:
    gate = {"exact_match": 0.5, "latency_p95_ms": 50.0, "tool_call_match": 0.9}
    metrics = {"exact_match": 0.9, "latency_p95_ms": 80.0, "tool_call_match": None}
    verdict = check_gate(metrics, gate)
    assert not verdict.passed
    assert verdict.reasons == ["latency_p95_ms 80 is above the gate's maximum 50"]


def test_must_beat_the_current_student() -> None:
    gate = {"exact_match": 0.9}
    assert not check_gate({"exact_match": 0.93}, gate, {"exact_match": 0.95}).passed
    assert check_gate({"exact_match": 0.95}, gate, {"exact_match": 0.95}).passed
    assert not check_gate({"exact_match": 0.95}, gate, {"exact_match": 0.95}, 0.01).passed
