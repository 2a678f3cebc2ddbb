"""Which model answers each request: the per-request reads of the canary's weights, and the
traffic counters the canary loop publishes and judges (summed over every replica).

Per request the router answers three cheap questions: which student (if any) serves this
request, whether a request the weights gave a student goes to the teacher instead (holdout,
so quality keeps being measured at 100%), and whether a teacher-served request is also sent
to the candidate (shadow). It reads the controllers the canary loop owns and moves.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from canary.controller import CanaryController
from canary.counters import bucket


@dataclass
class RouteTraffic:
    """What one route's requests did since this replica last published its counts (names as
    in `IntervalStats`; latencies as histograms, so replicas' counts add up)."""

    student_requests: int = 0
    student_errors: int = 0
    teacher_requests: int = 0
    teacher_errors: int = 0
    fallbacks: int = 0
    deferred: int = 0  # low-confidence answers the teacher answered instead
    shadow_agree: int = 0
    shadow_disagree: int = 0
    shadow_errors: int = 0
    student_latency: dict[str, int] = field(default_factory=dict)
    teacher_latency: dict[str, int] = field(default_factory=dict)

    def served(self, by_student: bool, ok: bool, latency_s: float) -> None:
        if by_student:
            self.student_requests += 1
            self.student_errors += not ok
            latencies = self.student_latency
        else:
            self.teacher_requests += 1
            self.teacher_errors += not ok
            latencies = self.teacher_latency
        b = bucket(latency_s)
        latencies[b] = latencies.get(b, 0) + 1

    def fell_back(self, reason: str) -> None:
        """A request the weights gave the student, answered by the teacher instead."""
        self.student_requests += 1
        if reason == "low_confidence":
            self.deferred += 1
        else:
            self.fallbacks += 1
        self.student_errors += reason == "error"

    def compared(self, verdict: str) -> None:
        """One shadow or holdout pair: agree, disagree or error."""
        if verdict == "agree":
            self.shadow_agree += 1
        elif verdict == "disagree":
            self.shadow_disagree += 1
        else:
            self.shadow_errors += 1

    def counters(self) -> dict[str, Any]:
        """The non-zero counts, JSON-able (what a replica publishes)."""
        return {k: v for k, v in asdict(self).items() if v}


class Traffic:
    """Every route's counts since they were last taken (the canary loop publishes them)."""

    def __init__(self, routes: Iterable[str]) -> None:
        self.routes = {name: RouteTraffic() for name in routes}

    def __getitem__(self, route: str) -> RouteTraffic:
        return self.routes[route]

    def take(self) -> dict[str, dict[str, Any]]:
        """Each route's counts since the last take, and zero them (routes with none left out).

        Runs on the event loop like the requests that count, so no count falls between."""
        taken = {}
        for name, counts in self.routes.items():
            if counters := counts.counters():
                taken[name] = counters
                self.routes[name] = RouteTraffic()
        return taken


class Router:
    """The per-request reads of each route's canary controller."""

    def __init__(self, controllers: Mapping[str, CanaryController], traffic: Traffic) -> None:
        self.controllers = controllers
        self.traffic = traffic

    def choose(self, route: str, sticky_key: str) -> str | None:
        """The student version that serves this request, or None for the teacher.

        Sticky: the same session (or `user`) always lands in the same bucket, so one
        conversation stays with one model while the weights stand still."""
        ctl = self.controllers.get(route)
        if ctl is None:
            return None
        weights = ctl.weights()
        if not weights:
            return None
        hashed = int.from_bytes(hashlib.blake2b(sticky_key.encode(), digest_size=4).digest())
        point = hashed % 10_000 / 100.0
        edge = 0.0
        for version in sorted(weights):
            edge += weights[version]
            if point < edge:
                return version
        return None

    def shadow_for(self, route: str) -> str | None:
        """The student a teacher-served request should also be compared with, off the
        response path, or None."""
        ctl = self.controllers.get(route)
        if ctl is None:
            return None
        share = ctl.shadow_share() or ctl.holdout_share()
        target = ctl.candidate or ctl.current
        return target if target and share and random.random() < share else None

    def holdout(self, route: str) -> bool:
        """Whether a request the weights gave a student goes to the teacher instead (and is
        shadowed), so quality keeps being measured at 100%."""
        ctl = self.controllers.get(route)
        return ctl is not None and random.random() < ctl.holdout_share()
