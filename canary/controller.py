"""The canary controller: a per-route state machine that moves a candidate student from shadow
to all of a route's traffic, one analysis interval per step, rolling back on a failed check.

Pure and synchronous (no I/O, no event loop): time comes from an injected clock, interval
statistics through `evaluate`; transitions go to Prometheus and to an optional callback, which
the server uses to persist them. `weight` is the percent the candidate serves; the previously
promoted version (`current`), if any, serves the rest, else the teacher.
"""

from __future__ import annotations

import bisect
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from canary.settings import CanarySettings
from monitoring.metrics import Metrics

State = Literal["idle", "shadow", "canary", "promoted", "paused", "rolled_back"]
Status = Literal["pass", "fail", "inconclusive", "skipped"]
Action = Literal["advance", "hold", "rollback", "none"]
ACTIVE: tuple[State, ...] = ("shadow", "canary", "paused")
SNAPSHOT_VERSION = 1
# Kept in memory and in snapshots; the logbook's canary_transitions table keeps them all.
MAX_HISTORY = 100
# A step judged on an interval that mostly predates it (a manual change, a resume) would be
# judged on the previous step's traffic; half an interval leaves room for scheduler jitter.
MIN_STEP_FRACTION = 0.5


class CanaryError(ValueError):
    """A canary control that does not apply to the route's current state or arguments."""


@dataclass(frozen=True)
class IntervalStats:
    """One analysis interval of one route, as counted by the proxy. `student_*`: requests
    routed to the candidate (fallbacks included); `teacher_*`: requests the teacher served;
    `shadow_*`: candidate-vs-teacher comparisons, from shadow and holdout pairs alike, judged
    by what the client would get (an answer the cascade defers is the teacher's: it agrees).
    `deferred`: answers sent to the teacher for low confidence; `calibrated`: the student has
    a calibrated cascade rule, so deferring is its design rather than a failure."""

    student_requests: int = 0
    student_errors: int = 0
    teacher_requests: int = 0
    teacher_errors: int = 0
    student_p95_s: float | None = None
    teacher_p95_s: float | None = None
    shadow_agree: int = 0
    shadow_disagree: int = 0
    shadow_errors: int = 0
    fallbacks: int = 0
    deferred: int = 0
    calibrated: bool = False
    drift_scores: Mapping[str, float] = field(default_factory=dict)
    drift_act: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Check:
    """One check of one interval; `name` before any `:` is the metric reason label."""

    name: str
    status: Status
    value: float | None
    threshold: float | None
    detail: str


@dataclass(frozen=True)
class Transition:
    """One state change, with the checks that caused it (empty for manual ones)."""

    at: float
    from_state: str
    to_state: str
    version: str | None
    step: int | None
    weight: int
    reason: str
    detail: str
    checks: tuple[Check, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form, as snapshots and the logbook keep it."""
        return asdict(self) | {"checks": [asdict(c) for c in self.checks]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Transition:
        """Inverse of `to_dict`."""
        return cls(**{**data, "checks": tuple(Check(**c) for c in data.get("checks", ()))})


@dataclass(frozen=True)
class Decision:
    """What one `evaluate` concluded, and the transition it made, if any."""

    action: Action
    reason: str
    checks: tuple[Check, ...] = ()
    transition: Transition | None = None


def judge(stats: IntervalStats, settings: CanarySettings, shadow: bool) -> tuple[Check, ...]:
    """The checks of one interval. In shadow only agreement counts: nothing is served yet."""
    checks = [_agreement(stats, settings)]
    if not shadow:
        checks += [_error_ratio(stats, settings), _latency(stats, settings)]
        checks += [_fallback_ratio(stats, settings), *_drift(stats, settings)]
    return tuple(checks)


def _compare(name: str, value: float, limit: float, at_most: bool, label: str) -> Check:
    ok = value <= limit if at_most else value >= limit
    sign = ("<=" if ok else ">") if at_most else (">=" if ok else "<")
    return Check(
        name, "pass" if ok else "fail", value, limit, f"{label} {value:.3f} {sign} {limit:.3f}"
    )


def _agreement(stats: IntervalStats, settings: CanarySettings) -> Check:
    pairs = stats.shadow_agree + stats.shadow_disagree + stats.shadow_errors
    if pairs < settings.min_shadow_pairs:
        why = f"{pairs} compared pairs, fewer than the {settings.min_shadow_pairs} needed"
        return Check("agreement", "inconclusive", None, settings.min_agreement, why)
    # A student that errors on a pair did not agree with the teacher.
    value, limit = stats.shadow_agree / pairs, settings.min_agreement
    if value < limit and wilson_upper(stats.shadow_agree, pairs) >= limit:
        # Under the bar, but on so few pairs that a student at the bar would often score as
        # low: gather more pairs (the interval goes on) rather than roll back on noise.
        why = (f"agreement {value:.3f} < {limit:.3f} on {pairs} pairs is within noise of the "
               f"bar (95% upper bound {wilson_upper(stats.shadow_agree, pairs):.3f}); "
               "gathering more pairs")  # fmt: skip
        return Check("agreement", "inconclusive", value, limit, why)
    return _compare("agreement", value, limit, False, f"agreement ({pairs} pairs)")


def wilson_upper(successes: int, n: int, z: float = 1.645) -> float:
    """One-sided 95% upper bound on a proportion (Wilson score): a true agreement above it
    would have scored `successes` of `n` or fewer less than 5% of the time."""
    p, z2 = successes / n, z * z
    centre = p + z2 / (2 * n)
    margin = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return min(1.0, (centre + margin) / (1 + z2 / n))


def _too_few(stats: IntervalStats, settings: CanarySettings) -> str | None:
    if stats.student_requests >= settings.min_requests:
        return None
    return (
        f"{stats.student_requests} student requests, fewer than the {settings.min_requests} needed"
    )


def _error_ratio(stats: IntervalStats, settings: CanarySettings) -> Check:
    if why := _too_few(stats, settings):
        return Check("error_ratio", "inconclusive", None, None, why)
    # No teacher traffic (a 100% step) compares the student with an error-free teacher.
    teacher = stats.teacher_errors / stats.teacher_requests if stats.teacher_requests else 0.0
    label = f"student error ratio (teacher {teacher:.3f} + margin {settings.max_error_margin})"
    value = stats.student_errors / stats.student_requests
    return _compare("error_ratio", value, teacher + settings.max_error_margin, True, label)


def _latency(stats: IntervalStats, settings: CanarySettings) -> Check:
    if stats.teacher_p95_s is None:
        return Check("latency", "skipped", stats.student_p95_s, None, "teacher p95 unknown")
    ceiling = stats.teacher_p95_s * settings.max_latency_factor
    if stats.student_p95_s is None or _too_few(stats, settings):
        return Check("latency", "inconclusive", None, ceiling, "too few student requests")
    label = f"student p95 s ({settings.max_latency_factor} x teacher p95 {stats.teacher_p95_s:.3f})"
    return _compare("latency", stats.student_p95_s, ceiling, True, label)


def _fallback_ratio(stats: IntervalStats, settings: CanarySettings) -> Check:
    if why := _too_few(stats, settings):
        return Check("fallback_ratio", "inconclusive", None, settings.max_fallback_ratio, why)
    # Without a calibrated rule a low-confidence answer is a fallback like any other. With one,
    # deferring is the cascade at work: the client gets the teacher's answer, and rolling the
    # student back would only send it all of them. Live coverage against predicted is watched
    # by its own gauges and alert instead.
    failed = stats.fallbacks + (0 if stats.calibrated else stats.deferred)
    value = failed / stats.student_requests
    return _compare("fallback_ratio", value, settings.max_fallback_ratio, True, "fallback ratio")


def _drift(stats: IntervalStats, settings: CanarySettings) -> list[Check]:
    checks = []
    for method, score in sorted(stats.drift_scores.items()):
        limit = settings.max_drift.get(method, stats.drift_act.get(method))
        if limit is None:
            checks.append(Check(f"drift:{method}", "skipped", score, None, "no threshold"))
        else:
            checks.append(_compare(f"drift:{method}", score, limit, True, f"drift {method}"))
    return checks


OnTransition = Callable[["CanaryController", Transition], None]


class CanaryController:
    """The canary of one route: its state, candidate, weight, last checks and history."""

    def __init__(
        self,
        route: str,
        settings: CanarySettings,
        *,
        clock: Callable[[], float] = time.time,
        metrics: Metrics | None = None,
        on_transition: OnTransition | None = None,
    ) -> None:
        self.route, self.settings, self.clock = route, settings, clock
        self.metrics, self.on_transition = metrics, on_transition
        self.state: State = "idle"
        self.candidate: str | None = None
        self.current: str | None = None
        self.weight_pct = 0
        self.step: int | None = None
        self.step_started_at = clock()
        self.paused_from: State | None = None
        self.last_evaluated_at: float | None = None  # with last_decision: the last interval
        self.last_decision: Decision | None = None
        self.history: list[Transition] = []
        self._publish()

    def weight(self) -> int:
        """Percent of the route's traffic the candidate serves (0-100)."""
        return self.weight_pct

    def weights(self) -> dict[str, int]:
        """Percent served by each student version; the teacher serves the rest."""
        shares: dict[str, int] = {}
        if self.candidate is not None and self.weight_pct:
            shares[self.candidate] = self.weight_pct
        if self.current is not None and self.current != self.candidate:
            shares[self.current] = 100 - self.weight_pct
        return shares

    def shadow_share(self) -> float:
        """Share of the requests the candidate does not serve that are also sent to it, off
        the response path, and compared (shadow and canary, paused ones included)."""
        return self.settings.shadow_share if self._live_state() in ("shadow", "canary") else 0.0

    def holdout_share(self) -> float:
        """Share of student-served requests also sent to the teacher, so quality keeps being
        measured during the canary and after promotion."""
        return self.settings.holdout_share if self.weights() else 0.0

    def _live_state(self) -> State:
        # A paused canary keeps serving and comparing as it was; it only stops moving.
        return self.paused_from if self.state == "paused" and self.paused_from else self.state

    def start(
        self, version: str, *, force: bool = False, reason: str = "manual", detail: str = ""
    ) -> Transition:
        """Put `version` in shadow; `force` replaces a candidate already being judged."""
        self._take(version, force, replace_same=True)
        return self._move("shadow", 0, reason, detail or f"started {version} in shadow")

    def set_weight(self, version: str, pct: int, *, force: bool = False) -> Transition:
        """Serve `pct` percent of the route from `version` now; automatic steps go on from there."""
        if isinstance(pct, bool) or not isinstance(pct, int) or not 0 <= pct <= 100:
            raise CanaryError(f"Weight must be a whole percent from 0 to 100, not {pct!r}.")
        self._take(version, force, replace_same=False)
        target: State = "shadow" if pct == 0 else "canary"
        if self.state == "paused":
            self.paused_from, target = target, "paused"
        return self._move(target, pct, "manual", f"weight set to {pct}% ({target})")

    def _take(self, version: str, force: bool, replace_same: bool) -> None:
        busy = self.state in ACTIVE and (replace_same or version != self.candidate)
        if busy and not force:
            raise CanaryError(
                f"Route {self.route!r} is already judging {self.candidate!r} ({self.state}); "
                "roll it back first or force the change."
            )
        self.candidate = version

    def pause(self) -> Transition:
        """Freeze the route where it is: traffic keeps flowing, steps stop moving."""
        if self.state not in ("shadow", "canary", "promoted"):
            raise self._refuse("pause")
        self.paused_from = self.state
        return self._move("paused", self.weight_pct, "manual", f"paused in {self.state}")

    def resume(self) -> Transition:
        """Go back to the paused state; its step is judged afresh from now."""
        if self.state != "paused" or self.paused_from is None:
            raise self._refuse("resume")
        target, self.paused_from = self.paused_from, None
        return self._move(target, self.weight_pct, "manual", f"resumed {target}")

    def promote(self) -> Transition:
        """Serve all of the route from the candidate now."""
        if self.state not in ACTIVE or self.candidate is None:
            raise self._refuse("promote")
        return self._promote("manual", f"promoted {self.candidate} by hand")

    def rollback(self, detail: str = "rolled back by hand", reason: str = "manual") -> Transition:
        """Send all of the route to the teacher now; `reason` is the bounded metric label."""
        if self.state not in (*ACTIVE, "promoted"):
            raise self._refuse("roll back")
        self.current, self.paused_from = None, None
        return self._move("rolled_back", 0, reason, detail)

    def _refuse(self, what: str) -> CanaryError:
        return CanaryError(f"Route {self.route!r} is {self.state}; there is nothing to {what}.")

    def evaluate(self, stats: IntervalStats) -> Decision:
        """Judge one interval: advance a step, hold (too little traffic), or roll back."""
        now = self.clock()
        if self.state not in ("shadow", "canary"):
            return Decision("none", f"nothing to judge while {self.state}")
        elapsed = now - self.step_started_at
        if elapsed < MIN_STEP_FRACTION * self.settings.interval_s:
            why = f"step began {elapsed:.0f}s ago, less than half an interval"
            return self._decided(now, Decision("hold", why))
        checks = judge(stats, self.settings, shadow=self.state == "shadow")
        if failed := [c for c in checks if c.status == "fail"]:
            detail = "; ".join(c.detail for c in failed)
            # Recorded before the move, so the snapshot the callback stores includes it.
            self._decided(now, Decision("rollback", detail, checks))
            self.current, self.paused_from = None, None
            move = self._move("rolled_back", 0, failed[0].name.split(":")[0], detail, checks)
            return self._decided(now, Decision("rollback", detail, checks, move))
        if waiting := [c for c in checks if c.status == "inconclusive"]:
            why = "inconclusive: " + "; ".join(c.detail for c in waiting)
            return self._decided(now, Decision("hold", why, checks))
        self._decided(now, Decision("advance", "checks passed", checks))
        move = self._advance(checks)
        return self._decided(now, Decision("advance", "checks passed", checks, move))

    def _decided(self, now: float, decision: Decision) -> Decision:
        self.last_evaluated_at, self.last_decision = now, decision
        return decision

    def _advance(self, checks: tuple[Check, ...]) -> Transition:
        # Steps are found by weight, not index, so a manual weight between steps (or a
        # step list changed across a restart) still moves to the next larger step.
        nxt = bisect.bisect_right(self.settings.steps, self.weight_pct)
        if nxt >= len(self.settings.steps):
            return self._promote("checks_passed", "every step passed", checks)
        pct = self.settings.steps[nxt]
        return self._move("canary", pct, "checks_passed", f"checks passed; {pct}%", checks)

    def _promote(self, reason: str, detail: str, checks: tuple[Check, ...] = ()) -> Transition:
        self.current, self.paused_from = self.candidate, None
        return self._move("promoted", 100, reason, detail, checks)

    def _move(
        self, to: State, pct: int, reason: str, detail: str, checks: tuple[Check, ...] = ()
    ) -> Transition:
        now = self.clock()
        from_state, self.state, self.weight_pct, self.step_started_at = self.state, to, pct, now
        index = bisect.bisect_right(self.settings.steps, pct) - 1
        self.step = max(0, index) if self._live_state() == "canary" else None
        move = Transition(
            now, from_state, to, self.candidate, self.step, pct, reason, detail, checks
        )
        self.history = [*self.history, move][-MAX_HISTORY:]
        if self.metrics is not None:
            self.metrics.canary_transitions.labels(self.route, from_state, to, reason).inc()
        self._publish()
        if self.on_transition is not None:
            self.on_transition(self, move)
        return move

    def _publish(self) -> None:
        if self.metrics is None:
            return
        self.metrics.set_canary_state(self.route, self.state)
        self.metrics.canary_step.labels(self.route).set(self.step or 0)
        self.metrics.canary_weight.labels(self.route).set(self.weight_pct / 100)

    def snapshot(self) -> dict[str, Any]:
        """Everything needed to show and restore this canary, as JSON-able values."""
        last = self.last_decision
        return {
            "snapshot_version": SNAPSHOT_VERSION,
            "route": self.route,
            **{key: getattr(self, attr) for key, attr in _SNAPSHOT_ATTRS.items()},
            "steps": list(self.settings.steps),
            "last_decision": {"action": last.action, "reason": last.reason} if last else None,
            "last_checks": [asdict(c) for c in last.checks] if last else [],
            "history": [t.to_dict() for t in self.history],
        }

    @classmethod
    def from_snapshot(
        cls,
        snapshot: Mapping[str, Any],
        settings: CanarySettings,
        *,
        clock: Callable[[], float] = time.time,
        metrics: Metrics | None = None,
        on_transition: OnTransition | None = None,
    ) -> CanaryController:
        """A controller that goes on where the one that wrote `snapshot` stopped."""
        if snapshot.get("snapshot_version") != SNAPSHOT_VERSION:
            raise CanaryError(
                f"Canary snapshot version {snapshot.get('snapshot_version')!r} is not "
                f"{SNAPSHOT_VERSION}; upgrade apprentice or reset the route's canary."
            )
        ctl = cls(snapshot["route"], settings, clock=clock, on_transition=on_transition)
        for key, attr in _SNAPSHOT_ATTRS.items():
            setattr(ctl, attr, snapshot[key])
        if (last := snapshot["last_decision"]) is not None:
            checks = tuple(Check(**c) for c in snapshot["last_checks"])
            ctl.last_decision = Decision(last["action"], last["reason"], checks)
        ctl.history = [Transition.from_dict(t) for t in snapshot["history"]]
        # Metrics come last so restoring publishes the restored state, not idle first.
        ctl.metrics = metrics
        ctl._publish()
        return ctl


# Snapshot key -> controller attribute, for the plain values saved and restored as they are.
_SNAPSHOT_ATTRS = dict(
    state="state", version="candidate", current="current", step="step", weight="weight_pct",
    step_started_at="step_started_at", paused_from="paused_from",
    last_evaluated_at="last_evaluated_at",
)  # fmt: skip
