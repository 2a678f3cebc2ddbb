"""The canary loop: who serves each route, looked at every tick (about a second), by every
replica, with one of them (the leader) deciding.

Each tick, on every replica:
1. sync with the control plane: publish this replica's traffic counts since the last tick,
   renew or take the leader lease, and adopt every snapshot another replica changed (a weight
   set through any replica's admin API is obeyed by all within a tick);
and on the leader only, in order:
2. drift: routes whose `[routes.drift] interval_s` has passed are scored; past an act
   threshold a promoted student goes back to the teacher, and a retrain is asked for once per
   reference (the student it produces is the fix);
3. discovery: a newly registered candidate starts in shadow when the route says auto_canary;
4. judgement: each route whose `[routes.canary] interval_s` has passed is judged on the
   interval's counters summed over every replica, and the latest drift scores (advance, hold,
   roll back);
5. persistence: transitions and snapshots go to the control plane (compare-and-set on each
   route's version: a change another replica made first wins, and this one is dropped and
   re-read), and each student's lifecycle status to the registry. This loop is the only writer
   of those statuses.

Manual controls (the admin API, on any replica) read the latest snapshot, act on it and
persist the same way. The per-request reads (which student serves a request, shadow, holdout)
and the traffic counters belong to the proxy; this loop takes the counts through
`TrafficSource`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from canary.controller import ACTIVE, CanaryController, CanaryError, IntervalStats, Transition
from canary.counters import add, interval_stats, summed
from canary.settings import CanarySettings
from canary.statuses import Serving, status_changes
from cluster.control import ControlPlane, ControlUnavailable, Versioned
from monitoring.drift_monitor import DriftMonitor, DriftReport
from monitoring.metrics import Metrics
from retrain import students

log = logging.getLogger("apprentice.canary")
# A route whose snapshot changed: the transition (None after a judgement that made none) and
# the status changes it means for its students.
_Pending = tuple[str, Transition | None, dict[str, str]]
# Each route's snapshot and transitions, as a logbook from before the control plane kept them.
Imported = Mapping[str, tuple[dict[str, Any], list[Transition]]]


class TrafficSource(Protocol):
    """The proxy's per-route counts since they were last taken (see proxy.routing.Traffic)."""

    def take(self) -> dict[str, dict[str, Any]]: ...


class StudentRefused(CanaryError):
    """A control naming a student that cannot take traffic; `code` says why."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


LEASE = "canary-leader"  # the lease whose holder runs drift, discovery, judgement, retrains
KEEP_TRAFFIC_S = 3600.0  # published counts older than every open interval and this are pruned


@dataclass
class _Seen:
    """What one sync brought back from the control plane."""

    leading: bool
    snapshots: dict[str, Versioned]
    intervals: dict[str, tuple[IntervalStats, float]]  # judged routes: stats, newest row time
    clock: float  # the database's time


class CanaryLoop:
    """The canary controllers of every route of one replica, and the loop that moves them."""

    def __init__(
        self,
        data_dir: Path,
        routes: Mapping[str, CanarySettings],
        *,
        control: ControlPlane,
        drift: DriftMonitor,
        traffic: TrafficSource,
        metrics: Metrics,
        on_retrain: Callable[[str], object] | None = None,
        clock: Callable[[], float] = time.time,
        lease_ttl_s: float = 10.0,
        info: Mapping[str, Any] | None = None,
    ) -> None:
        self.data_dir, self.settings, self.clock = data_dir, dict(routes), clock
        self.control, self.drift, self.traffic, self.metrics = control, drift, traffic, metrics
        self.on_retrain, self.lease_ttl_s = on_retrain, lease_ttl_s
        self.info = dict(info or {})
        self.controllers: dict[str, CanaryController] = {}
        self._interval_started = {name: clock() for name in routes}
        self._since: dict[str, float] = {}  # database time after which the interval's counts are
        self._versions: dict[str, int] = {}  # the snapshot version each controller reflects
        self._seen: dict[str, int] = {}
        self._serving: dict[str, Serving] = {}
        self._pending: list[_Pending] = []
        self._unpublished: dict[str, dict[str, Any]] = {}  # counts a failed sync gave back
        self._reference_of: dict[str, str | None] = {}
        self._retrain_asked: dict[str, str | None] = {}
        self._rules: dict[tuple[str, str], students.CascadeRule | None] = {}
        self._lead_until = 0.0  # monotonic time this replica's lease is sure to last until
        self._db_offset = 0.0  # database clock minus ours, as of the last sync
        self._unavailable = False

    @property
    def leading(self) -> bool:
        """Whether this replica holds the leader lease now (and runs drift, discovery,
        judgement and the retrain schedule)."""
        return time.monotonic() < self._lead_until

    async def open(self, imported: Imported | None = None) -> None:
        """Restore each route's canary from the control plane (state survives restarts and is
        shared by replicas). `imported`: snapshots and transitions of a logbook from before
        the control plane, written to it for routes it does not know yet."""
        stored = await asyncio.to_thread(self._import, imported or {})
        now = await asyncio.to_thread(self.control.clock)
        self._db_offset = now - time.time()
        for name, settings in self.settings.items():
            versioned = stored.get(name)
            if versioned is not None:
                ctl = self._restored(versioned.snapshot, settings)
                self._versions[name] = versioned.version
            else:
                ctl = CanaryController(name, settings, **self._hooks())
                self._versions[name] = 0
            self.controllers[name] = ctl
            self._since[name] = now
            self._serving[name] = Serving(ctl.candidate, ctl.current)
            self._seen[name] = max(students.versions_in(self._root(name)), default=0)
            self._update_reference(name)
            self._publish_student(name)
        await asyncio.to_thread(self._reconcile_statuses)

    def _import(self, imported: Imported) -> dict[str, Versioned]:
        stored = self.control.snapshots()
        for name, (snapshot, transitions) in imported.items():
            if name in self.settings and name not in stored:
                made = [t.to_dict() for t in transitions]
                if self.control.write_snapshot(name, None, snapshot, made) is not None:
                    log.info("canary %s: state imported from the logbook", name)
        return self.control.snapshots() if imported else stored

    def _hooks(self) -> dict[str, Any]:
        return dict(clock=self.clock, metrics=self.metrics, on_transition=self._transitioned)

    def _restored(self, snapshot: Mapping[str, Any], settings: CanarySettings) -> CanaryController:
        return CanaryController.from_snapshot(snapshot, settings, **self._hooks())

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
        """One pass: sync, then on the leader drift, discovery, judgement, persistence (see
        the module docstring)."""
        taken = self.traffic.take()
        due = [name for name, settings in self.settings.items()
               if self.clock() - self._interval_started[name] >= settings.interval_s]  # fmt: skip
        seen = await asyncio.to_thread(self._sync, taken, due)
        if seen is None:
            return  # the control plane is unreachable: serve on as we are, act on nothing
        self._adopt(seen.snapshots)
        self.drift.drain()
        if not self.leading:
            return
        for name in self.drift.due():
            report = self.drift.evaluate(name)
            if report is not None and name in self.controllers:
                self._act_on_drift(self.controllers[name], report)
        for name in self.settings:
            self._discover(name)
        for name, (stats, newest) in seen.intervals.items():
            self._judge(name, stats, newest)
        await self.persist()

    async def step_down(self) -> None:
        """Hand the leader lease back (at shutdown), so another replica takes over at once."""
        if self._lead_until:
            self._lead_until = 0.0
            with contextlib.suppress(ControlUnavailable):
                await asyncio.to_thread(self.control.release_lease, LEASE, self.control.replica)

    async def refresh(self) -> None:
        """Adopt every snapshot that changed since this replica last looked."""
        seen = await asyncio.to_thread(self._sync, {}, [], False)
        if seen is None:
            raise ControlUnavailable(f"the control plane at {self.control.url} is unreachable")
        self._adopt(seen.snapshots)

    def _sync(
        self, taken: dict[str, dict[str, Any]], due: list[str], lease: bool = True
    ) -> _Seen | None:
        """The control plane's part of a tick, in a thread: one short transaction each."""
        for route, counts in taken.items():
            add(self._unpublished.setdefault(route, {}), counts)
        control = self.control
        try:
            if self._unpublished:
                control.publish_traffic(control.replica, None, self._unpublished)
                self._unpublished = {}
            leading = self.leading
            if lease:
                asked = time.monotonic()
                control.heartbeat(control.replica, self.info | {"leader": leading})
                leading = control.acquire_lease(LEASE, control.replica, self.lease_ttl_s)
                if leading != self.leading:
                    log.info("replica %s %s the canary lease", control.replica,
                             "took" if leading else "lost")  # fmt: skip
                # Lead only until the lease surely lasts by our clock: ttl from when we asked.
                self._lead_until = asked + self.lease_ttl_s if leading else 0.0
            versions = control.versions()
            changed = any(v != self._versions.get(r) for r, v in versions.items()
                          if r in self.settings)  # fmt: skip
            snapshots = control.snapshots() if changed else {}
            now = control.clock()
            intervals = {}
            if leading:
                for name in due:
                    rows = control.traffic(name, self._since[name])
                    stats = interval_stats(summed(r["counters"] for r in rows))
                    intervals[name] = (stats, max((r["at"] for r in rows), default=0.0))
                if due:
                    control.prune_traffic(min(min(self._since.values()), now - KEEP_TRAFFIC_S))
        except ControlUnavailable as exc:
            if not self._unavailable:
                log.error("canary: %s; serving on with the last weights known", exc)
            self._unavailable = True
            return None
        if self._unavailable:
            log.info("canary: the control plane at %s answers again", control.url)
        self._unavailable = False
        self._db_offset = now - time.time()
        return _Seen(leading, snapshots, intervals, now)

    def _adopt(self, snapshots: Mapping[str, Versioned]) -> None:
        """Take on the snapshots another replica (or a manual control) wrote."""
        for name, versioned in snapshots.items():
            if name not in self.settings or versioned.version == self._versions.get(name):
                continue
            if any(route == name for route, _, _ in self._pending):
                log.warning("canary %s: changed by another replica first; its change wins",
                            name)  # fmt: skip
                self._pending = [p for p in self._pending if p[0] != name]
            try:
                ctl = self._restored(versioned.snapshot, self.settings[name])
            except CanaryError as exc:  # a snapshot of a newer release: keep what we have
                log.error("canary %s: cannot adopt snapshot %d: %s", name, versioned.version, exc)
                continue
            self.controllers[name] = ctl
            self._versions[name] = versioned.version
            self._serving[name] = Serving(ctl.candidate, ctl.current)
            self._update_reference(name)
            self._publish_student(name)

    def _db_now(self) -> float:
        return time.time() + self._db_offset

    def _judge(self, name: str, counted: IntervalStats, newest: float) -> None:
        ctl = self.controllers[name]
        report = self.drift.latest(name)
        stats = replace(
            counted,
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
            self._interval_started[name] = self.clock()
            if decision.transition is None:  # (a transition restarted the interval already)
                self._since[name] = max(self._since[name], newest)
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

    async def command(self, route: str, act: Callable[[CanaryController], object]) -> None:
        """Apply a manual control to the route's latest state and store it before returning.

        Any replica may: the latest snapshot is read first, and a change another replica
        stored in between makes this one read again and retry (a CanaryError after three)."""
        for _ in range(3):
            await self.refresh()
            act(self.controllers[route])
            if await self._persist_routes({route}):
                return
        raise CanaryError(
            f"Route {route!r}'s canary kept changing on other replicas; look again and retry."
        )

    async def start(self, route: str, version: str) -> None:
        """Put a registered student in shadow, replacing any candidate being judged."""
        self._check_can_serve(route, version)
        await self.command(route, lambda ctl: ctl.start(version, force=True))

    async def set_weight(self, route: str, version: str, pct: int) -> None:
        """Serve `pct` percent of the route from a registered student now."""
        self._check_can_serve(route, version)
        await self.command(route, lambda ctl: ctl.set_weight(version, pct, force=True))

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
        return ctl.snapshot() | {"weights": ctl.weights(), "revision": self._versions[route]}

    def cluster(self) -> dict[str, Any]:
        """This replica, whether it leads, and the live replicas (from their heartbeats).

        A replica is live while its last heartbeat is younger than the lease: one that has
        said nothing for that long could not hold the lease either. Who leads is read from
        the lease itself, not from heartbeats (written before each replica asks for the lease,
        a heartbeat can say "leader" after the lease has moved on), so one leader at most."""
        replicas = self.control.replicas(max_age_s=self.lease_ttl_s)
        lease = self.control.lease(LEASE)
        leader = None if lease is None else lease.holder
        for replica in replicas:
            replica["info"] = dict(replica["info"]) | {"leader": replica["replica"] == leader}
        return {
            "replica": self.control.replica,
            "leading": self.leading and leader == self.control.replica,
            "leader": leader,
            "control_plane": self.control.url,
            "replicas": replicas,
        }

    # -- persistence -----------------------------------------------------------------------

    def _transitioned(self, ctl: CanaryController, transition: Transition) -> None:
        before, self._serving[ctl.route] = (
            self._serving[ctl.route],
            Serving(ctl.candidate, ctl.current),
        )
        changes = status_changes(before, transition, ctl.current)
        self._pending.append((ctl.route, transition, changes))
        self._interval_started[ctl.route] = self.clock()
        self._since[ctl.route] = self._db_now()  # the next interval judges the new step only

    async def persist(self) -> None:
        """Store pending transitions and snapshots; write the students' new statuses."""
        await self._persist_routes({name for name, _, _ in self._pending})

    async def _persist_routes(self, routes: set[str]) -> bool:
        """Store the pending changes of `routes`; False when another replica changed one of
        them first (that route is then re-read at the next sync, its change here dropped)."""
        pending = [p for p in self._pending if p[0] in routes]
        if not pending:
            return True
        self._pending = [p for p in self._pending if p[0] not in routes]
        won: list[_Pending] = []
        lost = False
        for name in dict.fromkeys(route for route, _, _ in pending):
            mine = [p for p in pending if p[0] == name]
            made = [t.to_dict() for _, t, _ in mine if t is not None]
            snapshot = self.controllers[name].snapshot()
            try:
                version = await asyncio.to_thread(
                    self.control.write_snapshot, name, self._versions[name], snapshot, made
                )
            except ControlUnavailable:
                self._pending[:0] = mine  # kept, stored at a later tick
                raise
            if version is None:
                log.warning("canary %s: another replica changed it first; reading it again",
                            name)  # fmt: skip
                self._versions[name] = -1  # differs from any stored version: re-read
                lost = True
                continue
            self._versions[name] = version
            won += mine
        await asyncio.to_thread(self._write_statuses, won)
        for name in dict.fromkeys(route for route, _, _ in won):
            self._update_reference(name)
            self._publish_student(name)
        return not lost

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
