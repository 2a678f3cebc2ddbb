"""The calibrated cascade in traffic: each student's own rule, and how it fares live.

The retrain job calibrated, per student, the confidence signal and threshold that served the
most eval answers at the route's target agreement (``eval.json``'s ``cascade``). Serving
applies that rule to every answer (`proxy.serving`); a route may override it
(``cascade_signal`` + ``cascade_threshold``) or turn it off (``cascade = false``).

Shadow and holdout pairs carry the teacher's answer beside the student's, so they show what the
rule does live: the share of answers it would serve (coverage) and the share of those that
match the teacher (agreement), over each student's latest `WINDOW` pairs. Exported beside eval's
prediction, an alert fires when live agreement falls well under predicted.
"""

from __future__ import annotations

from collections import deque
from pathlib import Path

from monitoring.metrics import Metrics
from proxy.settings import RouteSettings
from retrain.students import CascadeRule, read_cascade, student_dir

WINDOW = 1000  # pairs per student behind the live gauges: recent, and enough to be steady


class Cascade:
    """Each student's rule (read once from its eval.json) and its live record."""

    def __init__(self, data_dir: Path, metrics: Metrics) -> None:
        self.data_dir = data_dir
        self.metrics = metrics
        self._rules: dict[tuple[str, str], CascadeRule | None] = {}
        self._live: dict[tuple[str, str], deque[tuple[bool, bool]]] = {}

    def rule(self, route: RouteSettings, version: str) -> CascadeRule | None:
        """The rule answers of `version` are judged by on `route`, or None for none."""
        if not route.cascade:
            return None
        if route.cascade_signal is not None and route.cascade_threshold is not None:
            return CascadeRule(route.cascade_signal, route.cascade_threshold)
        key = (route.name, version)
        if key not in self._rules:
            # A small file, read once per student; a student without one (trained before
            # calibration existed) has no rule, and only the confidence floor applies.
            path = student_dir(self.data_dir, route.name, int(version.removeprefix("v")))
            self._rules[key] = read_cascade(path)
        return self._rules[key]

    def record(self, route: str, version: str, served: bool, agree: bool) -> None:
        """One shadow or holdout pair: whether the rule would serve the student's answer, and
        whether that answer matched the teacher's."""
        self.metrics.cascade_pairs.labels(
            route, "served" if served else "deferred", "agree" if agree else "disagree"
        ).inc()
        window = self._live.setdefault((route, version), deque(maxlen=WINDOW))
        window.append((served, agree))
        served_n = sum(s for s, _ in window)
        self.metrics.cascade_live_pairs.labels(route, version).set(len(window))
        self.metrics.cascade_coverage.labels(route, version, "live").set(served_n / len(window))
        if served_n:
            agreed = sum(s and a for s, a in window)
            self.metrics.cascade_agreement.labels(route, version, "live").set(agreed / served_n)
