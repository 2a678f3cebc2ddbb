"""The gate a student must pass to become a candidate: thresholds, then beating the incumbent."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from retrain.settings import LOWER_IS_BETTER


@dataclass(frozen=True)
class Verdict:
    passed: bool
    reasons: list[str] = field(default_factory=list)  # why it failed; empty when it passed


def check_gate(
    metrics: dict[str, Any],
    thresholds: dict[str, float],
    current: dict[str, Any] | None = None,
    beat_margin: float = 0.0,
) -> Verdict:
    """Pass when every threshold holds and exact match is at least the current student's.

    "Beats" is read as "at least as good plus beat_margin": with a strict comparison a route
    whose student already matches the teacher on every eval row could never refresh it.
    A metric the eval split cannot measure (None, e.g. tool-call match without tool calls)
    is not held against the student.
    """
    reasons = []
    for name, limit in sorted(thresholds.items()):
        value = metrics.get(name)
        if value is None:
            continue
        if name in LOWER_IS_BETTER and value > limit:
            reasons.append(f"{name} {value:.3g} is above the gate's maximum {limit:.3g}")
        elif name not in LOWER_IS_BETTER and value < limit:
            reasons.append(f"{name} {value:.3g} is below the gate's minimum {limit:.3g}")
    if current is not None:
        mine, theirs = metrics.get("exact_match") or 0.0, current.get("exact_match") or 0.0
        if mine < theirs + beat_margin:
            reasons.append(
                f"exact_match {mine:.3g} does not beat the current student's {theirs:.3g}"
                + (f" by {beat_margin:.3g}" if beat_margin else "")
            )
    return Verdict(not reasons, reasons)
