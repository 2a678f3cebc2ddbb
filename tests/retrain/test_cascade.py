from __future__ import annotations

import math
import random

import pytest

from retrain.cascade import Answer, calibrate, cascade_json, choose, choose_threshold, curve


def test_curve_serves_ties_together_and_never_an_empty_answer() -> None:
    points = curve([0.0, -0.1, -0.1, -math.inf], [True, True, False, False])
    assert [(p.threshold, p.served) for p in points] == [(0.0, 1), (-0.1, 3)]
    assert points[1].coverage == 0.75 and points[1].agreement == pytest.approx(2 / 3)


def test_the_threshold_is_the_most_coverage_at_the_target() -> None:
    values = [-0.01, -0.02, -0.03, -0.04, -0.5, -0.6]
    correct = [True, True, True, True, False, True]
    assert choose_threshold(values, correct, 0.97) == (-0.04, 4 / 6, 1.0)
    assert choose_threshold(values, correct, 0.8) == (-0.6, 1.0, 5 / 6)
    assert choose_threshold(values, [False] * 6, 0.5) == (math.inf, 0.0, None)


def answers(n: int = 400, seed: int = 0) -> list[Answer]:
    """Wrong answers have a low minimum logprob; the mean hardly tells them apart."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        ok = rng.random() < 0.8
        low = rng.uniform(-0.2, -0.01) if ok else rng.uniform(-1.5, -0.3)
        mean = rng.uniform(-0.05, -0.01) if ok else rng.uniform(-0.08, -0.02)
        signals = {"mean_logprob": mean, "min_logprob": low, "value_mean_logprob": mean,
                   "value_min_logprob": low}  # fmt: skip
        out.append(Answer(f"p{i}", "novel" if i % 3 == 0 else "in_distribution", ok, signals))
    return out


def test_the_best_signal_wins_and_its_cross_validated_numbers_hold() -> None:
    data = answers()
    best, per_signal = choose(data, 0.97)
    assert best.signal == "min_logprob"  # ties with value_min: SIGNALS order decides
    assert per_signal["mean_logprob"].coverage < best.coverage
    calibration = calibrate(data, 0.97, folds=5)
    assert calibration.held_out.total == len(data)
    held = calibration.held_out.to_json()
    assert held["agreement"] >= 0.95 and held["coverage"] >= 0.7
    assert set(calibration.held_out_slices) == {"novel", "in_distribution"}


def test_cascade_json_says_serve_nothing_when_the_target_is_out_of_reach() -> None:
    data = [Answer(f"p{i}", "in_distribution", i % 2 == 0, dict.fromkeys(
        ("mean_logprob", "min_logprob", "value_mean_logprob", "value_min_logprob"), -0.1))
        for i in range(20)]  # fmt: skip
    out = cascade_json(calibrate(data, 0.97), data, 0.97)
    assert out["threshold"] is None and out["coverage"] == 0.0 and out["agreement"] is None
    assert out["target_agreement"] == 0.97 and out["curve"]


def test_the_target_holds_on_every_slice_not_only_pooled() -> None:
    # in-distribution: all right; novel: right ones at -0.1, wrong ones at -0.2
    values = [-0.01] * 80 + [-0.1] * 15 + [-0.2] * 5
    correct = [True] * 95 + [False] * 5
    slices = ["in_distribution"] * 80 + ["novel"] * 20
    pooled = choose_threshold(values, correct, 0.95)
    assert pooled[0] == -0.2  # pooled agreement 0.95 serves the wrong novel answers too
    per_slice = choose_threshold(values, correct, 0.95, slices)
    assert per_slice == (-0.1, 0.95, 1.0)
