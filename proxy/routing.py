"""Which model answers each request: the per-request reads of the canary's weights, and the
traffic counters of the current analysis interval that the canary loop judges.

Per request the router answers three cheap questions: which student (if any) serves this
request, whether a request the weights gave a student goes to the teacher instead (holdout,
so quality keeps being measured at 100%), and whether a teacher-served request is also sent
to the candidate (shadow). It reads the controllers the canary loop owns and moves.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from canary.controller import CanaryController, IntervalStats

MAX_LATENCIES = 20_000  # per interval and side; the p95 of the newest is kept


@dataclass
class RouteTraffic:
    """What one route's requests did during the current analysis interval."""

    student_requests: int = 0
    student_errors: int = 0
    teacher_requests: int = 0
    teacher_errors: int = 0
    fallbacks: int = 0
    deferred: int = 0  # low-confidence answers the teacher answered instead
    agree: int = 0
    disagree: int = 0
    shadow_errors: int = 0
    student_latency: list[float] = field(default_factory=list)
    teacher_latency: list[float] = field(default_factory=list)

    def served(self, by_student: bool, ok: bool, latency_s: float) -> None:
        if by_student:
            self.student_requests += 1
            self.student_errors += not ok
            latencies = self.student_latency
        else:
            self.teacher_requests += 1
            self.teacher_errors += not ok
            latencies = self.teacher_latency
        latencies.append(latency_s)
        if len(latencies) > MAX_LATENCIES:  # a long inconclusive interval must stay bounded
            del latencies[: MAX_LATENCIES // 2]

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
            self.agree += 1
        elif verdict == "disagree":
            self.disagree += 1
        else:
            self.shadow_errors += 1

    def stats(self) -> IntervalStats:
        return IntervalStats(
            student_requests=self.student_requests,
            student_errors=self.student_errors,
            teacher_requests=self.teacher_requests,
            teacher_errors=self.teacher_errors,
            student_p95_s=_p95(self.student_latency),
            teacher_p95_s=_p95(self.teacher_latency),
            shadow_agree=self.agree,
            shadow_disagree=self.disagree,
            shadow_errors=self.shadow_errors,
            fallbacks=self.fallbacks,
            deferred=self.deferred,
        )


class Traffic:
    """Every route's counters of the current interval (the canary loop's `TrafficSource`)."""

    def __init__(self, routes: Iterable[str]) -> None:
        self.routes = {name: RouteTraffic() for name in routes}

    def __getitem__(self, route: str) -> RouteTraffic:
        return self.routes[route]

    def interval(self, route: str) -> IntervalStats:
        return self.routes[route].stats()

    def reset(self, route: str) -> None:
        self.routes[route] = RouteTraffic()


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
        bucket = int.from_bytes(hashlib.blake2b(sticky_key.encode(), digest_size=4).digest())
        point = bucket % 10_000 / 100.0
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


def _p95(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
