"""Rollout: which model answers each request, and the loop that moves the canary.

One `Rollout` per server holds each route's canary controller (monitoring.canary), the
interval's traffic counters the controller judges, the drift monitor, and the registry watch
that starts new candidates. Per request it answers two cheap questions: which student (if
any) serves this request, and whether a teacher-served request is also shadowed.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from apprentice.config import Config
from apprentice.logbook import Logbook
from apprentice.ticker import tick_until
from monitoring.canary import CanaryController, IntervalStats, Transition
from monitoring.canary_store import append_transition, load_snapshots, save_snapshot
from monitoring.drift_monitor import DriftMonitor, DriftReport
from monitoring.metrics import Metrics

log = logging.getLogger("apprentice.rollout")
TICK_S = 1.0  # how often the loop looks for due intervals and new students
MAX_LATENCIES = 20_000  # per interval and side; the p95 of the newest is kept


@dataclass
class RouteTraffic:
    """What one route's requests did during the current analysis interval."""

    student_requests: int = 0
    student_errors: int = 0
    teacher_requests: int = 0
    teacher_errors: int = 0
    fallbacks: int = 0
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
        self.fallbacks += 1
        self.student_errors += reason == "error"

    def stats(self, drift: DriftReport | None, drift_act: dict[str, float]) -> IntervalStats:
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
            drift_scores=dict(drift.scores) if drift else {},
            drift_act=drift_act,
        )


class Rollout:
    """Canary controllers, traffic counters and drift for every route of one server."""

    def __init__(
        self,
        config: Config,
        logbook: Logbook,
        metrics: Metrics,
        students: Callable[[str], list[Any]],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config, self.logbook, self.metrics, self.clock = config, logbook, metrics, clock
        self._students = students  # route -> registry entries (retrain.registry.StudentInfo)
        self.routes = {r.name: r for r in config.routes}
        self.controllers: dict[str, CanaryController] = {}
        self.traffic = {r.name: RouteTraffic() for r in config.routes}
        self.drift = DriftMonitor(metrics, {r.name: r.drift for r in config.routes}, clock)
        self.drift_inbox: collections.deque[tuple[str, Any]] = collections.deque(maxlen=100_000)
        self._interval_started = {r.name: clock() for r in config.routes}
        self._seen: dict[str, int] = {}
        self._pending: list[tuple[str, Transition | None]] = []
        self._reference_of: dict[str, str | None] = {}
        self._retrain_asked: dict[str, str | None] = {}
        self.on_drift: Callable[[DriftReport], None] | None = None

    async def open(self) -> None:
        """Restore each route's canary from the logbook (state survives restarts)."""
        snapshots = await self.logbook.run(load_snapshots)
        for name, route in self.routes.items():
            ctl = (
                CanaryController.from_snapshot(
                    snapshots[name], route.canary, clock=self.clock, metrics=self.metrics,
                    on_transition=self._transitioned,
                )
                if name in snapshots
                else CanaryController(
                    name, route.canary, clock=self.clock, metrics=self.metrics,
                    on_transition=self._transitioned,
                )
            )  # fmt: skip
            self.controllers[name] = ctl
            known = [int(s.version) for s in self._students(name)]
            self._seen[name] = max(known, default=0)
            self._update_reference(name)

    # -- per request ---------------------------------------------------------------------------

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

    def shadow_for(self, route: str, served_by_student: str | None) -> str | None:
        """The student a request should also be compared with, off the response path."""
        ctl = self.controllers.get(route)
        if ctl is None:
            return None
        if served_by_student is None:
            share = ctl.shadow_share() or ctl.holdout_share()
            target = ctl.candidate or ctl.current
            return target if target and share and random.random() < share else None
        return None

    def holdout(self, route: str) -> bool:
        """Whether a request the weights gave a student goes to the teacher instead (and is
        shadowed), so quality keeps being measured at 100%."""
        ctl = self.controllers.get(route)
        return ctl is not None and random.random() < ctl.holdout_share()

    def observe_prompt(self, route: str, messages: Any) -> None:
        """Queue a live prompt for drift (thread-safe: the capture writer calls it)."""
        self.drift_inbox.append((route, messages))

    def record_shadow(self, route: str, verdict: str, student_text: str | None) -> None:
        traffic = self.traffic[route]
        if verdict == "agree":
            traffic.agree += 1
        elif verdict == "disagree":
            traffic.disagree += 1
        else:
            traffic.shadow_errors += 1
        self.drift.observe_shadow(route, verdict)
        if student_text is not None:
            self.drift.observe_output(route, student_text)

    # -- the loop --------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Judge intervals, score drift, start new candidates, persist; until `stop`."""
        await tick_until(stop, TICK_S, self.tick, log)

    async def tick(self) -> None:
        self._drain_drift_inbox()
        for name in self.routes:
            self._discover(name)
            if self.clock() - self._interval_started[name] >= self.routes[name].canary.interval_s:
                self._judge(name)
        await self._persist()

    def _judge(self, name: str) -> None:
        ctl = self.controllers[name]
        report = self.drift.evaluate(name)
        if report is not None:
            self._act_on_drift(ctl, report)
        drift_act: dict[str, float] = {}  # candidates: only canary.max_drift applies
        stats = self.traffic[name].stats(report, drift_act)
        decision = ctl.evaluate(stats)
        if decision.action != "none":
            log.info("canary %s: %s (%s)", name, decision.action, decision.reason)
        if decision.action != "hold":
            # Too little traffic to judge: keep counting into the same interval rather than
            # start from zero, so a 5% holdout still adds up to enough pairs.
            self.traffic[name] = RouteTraffic()
            self._interval_started[name] = self.clock()
        self._pending.append((name, None))

    def _act_on_drift(self, ctl: CanaryController, report: DriftReport) -> None:
        reference = self._reference_of.get(ctl.route)
        if report.trigger_retrain and self._retrain_asked.get(ctl.route) != reference:
            # Once per reference: the retrain it starts produces the student that fixes it.
            self._retrain_asked[ctl.route] = reference
            if self.on_drift is not None:
                self.on_drift(report)
        if not report.pause_canary:
            return
        detail = "drift past its act threshold: " + ", ".join(
            f"{m}={report.scores[m]:.3f}" for m in report.acting
        )
        # Only a student serving traffic is taken off it: a candidate in shadow or canary is
        # judged on live traffic by its own checks (agreement above all), and its drift check
        # uses the route's explicit canary.max_drift thresholds.
        if ctl.state == "promoted":
            ctl.rollback(detail=detail, reason="drift")

    def _discover(self, name: str) -> None:
        """A newly registered candidate starts in shadow when the route says auto_canary."""
        students = [s for s in self._students(name) if int(s.version) > self._seen[name]]
        if not students:
            return
        newest = students[-1]
        self._seen[name] = int(newest.version)
        ctl = self.controllers[name]
        if newest.status != "candidate" or not self.routes[name].canary.auto_canary:
            return
        if ctl.state in ("idle", "rolled_back", "promoted"):
            ctl.start(
                f"v{newest.version}",
                reason="auto_canary",
                detail=f"new candidate v{newest.version} registered; started in shadow",
            )
            self._update_reference(name)

    def _update_reference(self, name: str) -> None:
        """Drift compares live prompts with the data of the student being judged or served."""
        ctl = self.controllers[name]
        version = ctl.candidate or ctl.current
        if version == self._reference_of.get(name):
            return
        self._reference_of[name] = version
        reference = None
        for student in self._students(name):
            if f"v{student.version}" == version and student.dataset_version is not None:
                reference = _dataset_reference(self.config, name, student.dataset_version)
        try:
            self.drift.set_reference(name, reference)
        except ValueError as exc:  # a bad manifest must not stop the canary loop
            log.error("drift reference of %s %s unusable: %s", name, version, exc)
            self.drift.set_reference(name, None)

    def _drain_drift_inbox(self) -> None:
        from monitoring.drift import prompt_text

        while self.drift_inbox:
            route, messages = self.drift_inbox.popleft()
            if isinstance(messages, list):
                self.drift.observe_prompt(route, prompt_text(messages))

    def _transitioned(self, ctl: CanaryController, transition: Transition) -> None:
        self._pending.append((ctl.route, transition))
        self._interval_started[ctl.route] = self.clock()
        self.traffic[ctl.route] = RouteTraffic()  # the next interval judges the new step only

    async def _persist(self) -> None:
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        snapshots = {name: self.controllers[name].snapshot() for name, _ in pending}
        for name in snapshots:
            self._update_reference(name)

        def write(con: Any) -> None:
            for name, transition in pending:
                if transition is not None:
                    append_transition(con, name, transition)
            for name, snapshot in snapshots.items():
                save_snapshot(con, name, snapshot)

        await self.logbook.run(write)


def _dataset_reference(config: Config, route: str, version: int) -> dict[str, Any] | None:
    from curation.dataset import read_manifest

    try:
        reference: dict[str, Any] | None = read_manifest(config.data_dir, route, version).get(
            "reference"
        )
    except (FileNotFoundError, ValueError):
        return None
    return reference


def _p95(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
