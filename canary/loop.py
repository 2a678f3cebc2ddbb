"""The canary loop: who serves each route, looked at every tick (about a second).

Each tick, in order:
1. drift: routes whose `[routes.drift] interval_s` has passed are scored; past an act
   threshold a promoted student goes back to the teacher, and a retrain is asked for once per
   reference (the student it produces is the fix);
2. discovery: a newly registered candidate starts in shadow when the route says auto_canary;
3. judgement: each route whose `[routes.canary] interval_s` has passed is judged on the
   interval's traffic counters and the latest drift scores (advance, hold, roll back);
4. persistence: transitions and snapshots go to the logbook, and each student's lifecycle
   status to the registry. This loop is the only writer of those statuses.

Manual controls (the admin API) act on the same controllers and persist the same way. The
per-request reads (which student serves a request, shadow, holdout) and the traffic counters
belong to the proxy; this loop reads the counters through `TrafficSource`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

from canary.controller import ACTIVE, CanaryController, CanaryError, IntervalStats, Transition
from canary.settings import CanarySettings
from canary.statuses import Serving, status_changes
from canary.store import append_transition, load_snapshots, save_snapshot
from logbook.writer import Logbook
from monitoring.drift_monitor import DriftMonitor, DriftReport
from monitoring.metrics import Metrics
from retrain import students

log = logging.getLogger("apprentice.canary")
# A route whose snapshot changed: the transition (None after a judgement that made none) and
# the status changes it means for its students.
_Pending = tuple[str, Transition | None, dict[str, str]]


class TrafficSource(Protocol):
    """The proxy's per-route counters of the current analysis interval."""

    def interval(self, route: str) -> IntervalStats: ...

    def reset(self, route: str) -> None: ...


class StudentRefused(CanaryError):
    """A control naming a student that cannot take traffic; `code` says why."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


class CanaryLoop:
    """The canary controllers of every route of one server, and the loop that moves them."""

    def __init__(
        self,
        data_dir: Path,
        routes: Mapping[str, CanarySettings],
        *,
        logbook: Logbook,
        drift: DriftMonitor,
        traffic: TrafficSource,
        metrics: Metrics,
        on_retrain: Callable[[str], object] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.data_dir, self.settings, self.clock = data_dir, dict(routes), clock
        self.logbook, self.drift, self.traffic, self.metrics = logbook, drift, traffic, metrics
        self.on_retrain = on_retrain
        self.controllers: dict[str, CanaryController] = {}
        self._interval_started = {name: clock() for name in routes}
        self._seen: dict[str, int] = {}
        self._serving: dict[str, Serving] = {}
        self._pending: list[_Pending] = []
        self._reference_of: dict[str, str | None] = {}
        self._retrain_asked: dict[str, str | None] = {}
        self._rules: dict[tuple[str, str], students.CascadeRule | None] = {}

    async def open(self) -> None:
        """Restore each route's canary from the logbook (state survives restarts)."""
        snapshots = await self.logbook.run(load_snapshots)
        for name, settings in self.settings.items():
            kwargs: dict[str, Any] = dict(
                clock=self.clock, metrics=self.metrics, on_transition=self._transitioned
            )
            ctl = (
                CanaryController.from_snapshot(snapshots[name], settings, **kwargs)
                if name in snapshots
                else CanaryController(name, settings, **kwargs)
            )
            self.controllers[name] = ctl
            self._serving[name] = Serving(ctl.candidate, ctl.current)
            self._seen[name] = max(students.versions_in(self._root(name)), default=0)
            self._update_reference(name)
            self._publish_student(name)
        await asyncio.to_thread(self._reconcile_statuses)

    def _reconcile_statuses(self) -> None:
        """At start, make the registry say what the restored canaries say (a data_dir from
        before statuses were recorded, or a status write lost to a crash)."""
        for name, ctl in self.controllers.items():
            live = ctl.paused_from if ctl.state == "paused" else ctl.state
            wanted: dict[str, str] = {}
            if ctl.candidate is not None and live in ("shadow", "canary"):
                wanted[ctl.candidate] = str(live)
            if ctl.current is not None:
                wanted[ctl.current] = students.PROMOTED
            known = {s.name: s.status for s in students.list_students(self.data_dir, name)}
            stale = {v: s for v, s in wanted.items() if v in known and known[v] != s}
            self._write_statuses([(name, None, stale)])

    # -- the loop --------------------------------------------------------------------------

    async def tick(self) -> None:
        """One pass: drift, discovery, judgement, persistence (see the module docstring)."""
        self.drift.drain()
        for name in self.drift.due():
            report = self.drift.evaluate(name)
            if report is not None and name in self.controllers:
                self._act_on_drift(self.controllers[name], report)
        for name, settings in self.settings.items():
            self._discover(name)
            if self.clock() - self._interval_started[name] >= settings.interval_s:
                self._judge(name)
        await self.persist()

    def _judge(self, name: str) -> None:
        ctl = self.controllers[name]
        report = self.drift.latest(name)
        stats = replace(
            self.traffic.interval(name),
            drift_scores=dict(report.scores) if report else {},
            drift_act={},  # candidates: only canary.max_drift applies (see _act_on_drift)
            calibrated=ctl.candidate is not None and self._rule(name, ctl.candidate) is not None,
        )
        decision = ctl.evaluate(stats)
        if decision.action != "none":
            log.info("canary %s: %s (%s)", name, decision.action, decision.reason)
        if decision.action != "hold":
            # Too little traffic to judge: keep counting into the same interval rather than
            # start from zero, so a 5% holdout still adds up to enough pairs.
            self.traffic.reset(name)
            self._interval_started[name] = self.clock()
        self._pending.append((name, None, {}))

    def _act_on_drift(self, ctl: CanaryController, report: DriftReport) -> None:
        reference = self._reference_of.get(ctl.route)
        if report.trigger_retrain and self._retrain_asked.get(ctl.route) != reference:
            # Once per reference: the retrain it starts produces the student that fixes it.
            self._retrain_asked[ctl.route] = reference
            if self.on_retrain is not None:
                self.on_retrain(ctl.route)
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
        newer = [v for v in students.versions_in(self._root(name)) if v > self._seen[name]]
        published = [v for v in newer if (self._root(name) / f"v{v}" / "manifest.json").exists()]
        if not published:
            return
        newest = published[-1]
        self._seen[name] = newest
        info = self._student(name, f"v{newest}")
        ctl = self.controllers[name]
        if info is None or info.status != students.CANDIDATE:
            return
        if self.settings[name].auto_canary and ctl.state in ("idle", "rolled_back", "promoted"):
            detail = f"new candidate {info.name} registered; started in shadow"
            ctl.start(info.name, reason="auto_canary", detail=detail)

    # -- manual controls (the admin API) ---------------------------------------------------

    def start(self, route: str, version: str) -> Transition:
        """Put a registered student in shadow, replacing any candidate being judged."""
        self._check_can_serve(route, version)
        return self.controllers[route].start(version, force=True)

    def set_weight(self, route: str, version: str, pct: int) -> Transition:
        """Serve `pct` percent of the route from a registered student now."""
        self._check_can_serve(route, version)
        return self.controllers[route].set_weight(version, pct, force=True)

    def _check_can_serve(self, route: str, version: str) -> None:
        info = self._student(route, version)
        if info is None:
            raise StudentRefused(
                f"Route {route!r} has no registered student {version}; `apprentice students "
                "list` shows them.",
                "student_not_found",
            )
        if info.status == students.REJECTED:
            raise StudentRefused(
                f"Student {version} of route {route!r} was rejected by its gate (exact match "
                f"{info.exact_match}); it cannot take traffic.",
                "student_rejected",
            )

    def view(self, route: str) -> dict[str, Any]:
        """The route's canary as the admin API and the CLI show it."""
        ctl = self.controllers[route]
        return ctl.snapshot() | {"weights": ctl.weights()}

    # -- persistence -----------------------------------------------------------------------

    def _transitioned(self, ctl: CanaryController, transition: Transition) -> None:
        before, self._serving[ctl.route] = (
            self._serving[ctl.route],
            Serving(ctl.candidate, ctl.current),
        )
        changes = status_changes(before, transition, ctl.current)
        self._pending.append((ctl.route, transition, changes))
        self._interval_started[ctl.route] = self.clock()
        self.traffic.reset(ctl.route)  # the next interval judges the new step only

    async def persist(self) -> None:
        """Store pending transitions and snapshots; write the students' new statuses."""
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        snapshots = {name: self.controllers[name].snapshot() for name, _, _ in pending}

        def write(con: Any) -> None:
            for name, transition, _ in pending:
                if transition is not None:
                    append_transition(con, name, transition)
            for name, snapshot in snapshots.items():
                save_snapshot(con, name, snapshot)

        await self.logbook.run(write)
        await asyncio.to_thread(self._write_statuses, pending)
        for name in snapshots:
            self._update_reference(name)
            self._publish_student(name)

    def _write_statuses(self, pending: list[_Pending]) -> None:
        for route, transition, changes in pending:
            reason = transition.reason if transition is not None else ""
            for version, status in changes.items():
                try:
                    students.set_status(self.data_dir, route, _number(version), status, reason)
                except (FileNotFoundError, ValueError) as exc:  # a folder removed by hand
                    log.warning("status of %s %s not recorded: %s", route, version, exc)

    # -- helpers ---------------------------------------------------------------------------

    def _root(self, route: str) -> Path:
        return students.students_root(self.data_dir, route)

    def _student(self, route: str, version: str) -> students.StudentInfo | None:
        return next((s for s in students.list_students(self.data_dir, route)
                     if s.name == version), None)  # fmt: skip

    def _update_reference(self, name: str) -> None:
        """Drift compares live prompts with the data of the student being judged or served,
        and after a rollback still with the last one's: the drift that caused it stays
        visible, and ends when the traffic comes back."""
        ctl = self.controllers[name]
        version = ctl.candidate or ctl.current
        if version == self._reference_of.get(name):
            return
        self._reference_of[name] = version
        info = None if version is None else self._student(name, version)
        reference = None
        if info is not None and info.dataset_version is not None:
            reference = _dataset_reference(self.data_dir, name, info.dataset_version)
        try:
            self.drift.set_reference(name, reference)
        except ValueError as exc:  # a bad manifest must not stop the canary loop
            log.error("drift reference of %s %s unusable: %s", name, version, exc)
            self.drift.set_reference(name, None)

    def _rule(self, name: str, version: str) -> students.CascadeRule | None:
        """A student's calibrated cascade rule (eval.json never changes once published)."""
        if (name, version) not in self._rules:
            path = students.student_dir(self.data_dir, name, _number(version))
            self._rules[(name, version)] = students.read_cascade(path)
        return self._rules[(name, version)]

    def _publish_student(self, name: str) -> None:
        """apprentice_student_info: the student the route serves or shadows, if any; and the
        coverage and agreement its eval predicts for its cascade rule."""
        ctl = self.controllers[name]
        version = ctl.candidate if ctl.state in ACTIVE else ctl.current
        info = None if version is None else self._student(name, version)
        if info is None:
            self.metrics.clear_student(name)
            self.metrics.clear_cascade(name)
            return
        self.metrics.set_student(name, info.name, info.base)
        rule = self._rule(name, info.name)
        coverage, agreement = (rule.coverage, rule.agreement) if rule else (None, None)
        self.metrics.set_predicted_cascade(name, info.name, coverage, agreement)


def _number(version: str) -> int:
    return int(version.removeprefix("v"))


def _dataset_reference(data_dir: Path, route: str, version: int) -> dict[str, Any] | None:
    from curation.dataset import read_manifest

    try:
        reference: dict[str, Any] | None = read_manifest(data_dir, route, version).get("reference")
    except (FileNotFoundError, ValueError):
        return None
    return reference
