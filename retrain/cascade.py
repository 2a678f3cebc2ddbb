"""Calibrating the cascade: which confidence signal, and which threshold, a student serves by.

Each eval answer carries its confidence signals (`retrain.students.confidence_signals`) and
whether it matched the teacher. For a signal, serving every answer at or above a threshold
gives a coverage (share served) and an agreement (share of served answers that match). The
rule is the signal and threshold with the most coverage whose agreement is at least the target
on every eval slice at once; ties go to the higher agreement, then to the order of SIGNALS.

Every slice, not the pooled eval: in-distribution answers are nearly all right, so a pooled
target is met while answers naming new things are served at far less (measured on triage:
pooled 0.97 served the novel slice at 0.93). Agreement on a mix of traffic is a weighted mean of
the slices' agreements, so a rule that holds on each slice holds whatever the live mix.

A threshold chosen on the very answers it is judged on flatters itself (the top answers of a
small sample always look perfect). So the coverage and agreement reported are cross-validated:
the eval answers are dealt into folds, the whole choice (signal and threshold) is made on all
folds but one and applied to the one left out, and the served answers of every left-out fold
are pooled. The rule written for serving is the choice made on all the answers.

Pure functions of numbers, tested directly; nothing here loads a model.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from retrain.students import SIGNALS

CURVE_POINTS = 60  # points of each signal's coverage/agreement curve kept in eval.json


@dataclass(frozen=True)
class Answer:
    """One eval answer as the cascade sees it."""

    key: str  # stable id (the prompt), for dealing answers into folds
    slice: str
    correct: bool
    signals: dict[str, float]


@dataclass(frozen=True)
class Point:
    threshold: float
    coverage: float
    agreement: float
    served: int


@dataclass(frozen=True)
class Choice:
    signal: str
    threshold: float  # inf: nothing reaches the target, the student serves nothing
    coverage: float
    agreement: float | None  # None when nothing is served


@dataclass
class Tally:
    """Served and correctly served answers, of how many."""

    total: int = 0
    served: int = 0
    correct: int = 0

    def add(self, served: bool, correct: bool) -> None:
        self.total += 1
        self.served += served
        self.correct += served and correct

    def to_json(self) -> dict[str, Any]:
        return {
            "n": self.total,
            "served": self.served,
            "coverage": self.served / self.total if self.total else None,
            "agreement": self.correct / self.served if self.served else None,
        }


@dataclass
class Calibration:
    choice: Choice
    held_out: Tally  # cross-validated, all slices
    held_out_slices: dict[str, Tally] = field(default_factory=dict)
    curves: dict[str, list[Point]] = field(default_factory=dict)
    per_signal: dict[str, Choice] = field(default_factory=dict)


def curve(values: Sequence[float], correct: Sequence[bool]) -> list[Point]:
    """Coverage and agreement when serving answers with value >= each distinct threshold,
    from the strictest threshold down."""
    pairs = sorted(zip(values, correct, strict=True), key=lambda p: -p[0])
    n, points = len(pairs), []
    served = right = 0
    for i, (value, ok) in enumerate(pairs):
        served += 1
        right += ok
        if i + 1 < n and pairs[i + 1][0] == value:
            continue  # ties are served together
        if math.isinf(value) and value < 0:
            break  # -inf (an empty answer) is never served
        points.append(Point(value, served / n, right / served, served))
    return points


def choose_threshold(
    values: Sequence[float],
    correct: Sequence[bool],
    target: float,
    slices: Sequence[str] | None = None,
) -> tuple[float, float, float | None]:
    """(threshold, coverage, agreement) of the most coverage at agreement >= target within
    every slice (all answers one slice when `slices` is None); (inf, 0, None) when no
    threshold reaches it."""
    names = list(slices) if slices is not None else [""] * len(values)
    order = sorted(range(len(values)), key=lambda i: -values[i])
    served: Counter[str] = Counter()
    right: Counter[str] = Counter()
    best: tuple[float, float, float] | None = None
    for k, i in enumerate(order):
        value = values[i]
        if math.isinf(value) and value < 0:
            break  # -inf (an empty answer) is never served
        served[names[i]] += 1
        right[names[i]] += correct[i]
        if k + 1 < len(order) and values[order[k + 1]] == value:
            continue  # ties are served together
        if all(right[s] >= target * served[s] for s in served):
            total = sum(served.values())
            best = (value, total / len(values), sum(right.values()) / total)
    if best is None:
        return math.inf, 0.0, None
    return best


def choose(answers: Sequence[Answer], target: float) -> tuple[Choice, dict[str, Choice]]:
    """The best signal and threshold on `answers`, and each signal's own best."""
    correct = [a.correct for a in answers]
    slices = [a.slice for a in answers]
    per_signal = {}
    for signal in SIGNALS:
        values = [a.signals.get(signal, -math.inf) for a in answers]
        threshold, coverage, agreement = choose_threshold(values, correct, target, slices)
        per_signal[signal] = Choice(signal, threshold, coverage, agreement)
    best = max(
        per_signal.values(),
        key=lambda c: (c.coverage, c.agreement or 0.0, -SIGNALS.index(c.signal)),
    )
    return best, per_signal


def calibrate(answers: Sequence[Answer], target: float, folds: int = 5) -> Calibration:
    """The rule chosen on every answer, with cross-validated coverage and agreement."""
    choice, per_signal = choose(answers, target)
    held_out, slices = Tally(), {}
    for fold in range(folds):
        fit = [a for a in answers if _fold(a.key, folds) != fold]
        test = [a for a in answers if _fold(a.key, folds) == fold]
        if not fit or not test:
            continue
        rule, _ = choose(fit, target)
        for a in test:
            served = a.signals.get(rule.signal, -math.inf) >= rule.threshold
            held_out.add(served, a.correct)
            slices.setdefault(a.slice, Tally()).add(served, a.correct)
    curves = {}
    for signal in SIGNALS:
        values = [a.signals.get(signal, -math.inf) for a in answers]
        curves[signal] = _thin(curve(values, [a.correct for a in answers]))
    return Calibration(choice, held_out, slices, curves, per_signal)


def coverage_by_slice(
    answers: Sequence[Answer], signal: str, threshold: float
) -> dict[str, dict[str, Any]]:
    """Coverage and agreement of one rule on each slice (in-sample)."""
    tallies: dict[str, Tally] = {}
    for a in answers:
        served = a.signals.get(signal, -math.inf) >= threshold
        tallies.setdefault(a.slice, Tally()).add(served, a.correct)
    return {name: t.to_json() for name, t in sorted(tallies.items())}


def _fold(key: str, folds: int) -> int:
    digest = hashlib.blake2b(key.encode(), digest_size=4).digest()
    return int.from_bytes(digest) % folds


def _thin(points: list[Point]) -> list[Point]:
    if len(points) <= CURVE_POINTS:
        return points
    step = (len(points) - 1) / (CURVE_POINTS - 1)
    return [points[round(i * step)] for i in range(CURVE_POINTS)]


def cascade_json(
    calibration: Calibration, answers: Sequence[Answer], target: float
) -> dict[str, Any]:
    """The `cascade` section of eval.json."""
    c = calibration.choice
    held = calibration.held_out.to_json()
    return {
        "signal": c.signal,
        "threshold": None if math.isinf(c.threshold) else c.threshold,
        "target_agreement": target,
        # Predicted for live traffic: cross-validated, on answers the rule was not chosen on.
        "coverage": held["coverage"],
        "agreement": held["agreement"],
        "held_out": held,
        "slices": {k: t.to_json() for k, t in sorted(calibration.held_out_slices.items())},
        "in_sample": {
            "coverage": c.coverage,
            "agreement": c.agreement,
            "slices": coverage_by_slice(answers, c.signal, c.threshold),
        },
        "signals": {
            name: {
                "threshold": None if math.isinf(s.threshold) else s.threshold,
                "coverage": s.coverage,
                "agreement": s.agreement,
            }
            for name, s in calibration.per_signal.items()
        },
        "curve": [
            {"threshold": p.threshold, "coverage": p.coverage, "agreement": p.agreement}
            for p in calibration.curves.get(c.signal, [])
        ],
        "curves": {
            name: [[p.coverage, p.agreement] for p in points]
            for name, points in calibration.curves.items()
        },
    }
