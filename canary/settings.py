"""Per-route settings of the canary controller: the ``[routes.canary]`` section."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from monitoring.settings import THRESHOLD_KEYS


class CanarySettings(BaseModel):
    """How a candidate student moves from shadow to all of a route's traffic.

    Shadow comes first (weight 0), then one analysis interval per step; each interval's
    checks pass (next step), fail (roll back to the teacher at once) or are inconclusive
    (too little traffic: wait).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    auto_canary: bool = Field(
        False, description="A new candidate from the scheduler starts in shadow on its own."
    )
    steps: list[int] = Field(
        default_factory=lambda: [5, 25, 50, 100],
        description="Percent of traffic the candidate serves at each step, after shadow.",
    )
    interval_s: float = Field(60.0, gt=0, description="Seconds of traffic judged per step.")
    min_requests: int = Field(
        20, ge=1, description="Student-served requests an interval needs to be judged."
    )
    min_shadow_pairs: int = Field(
        20, ge=1, description="Compared pairs an interval needs to judge agreement."
    )
    min_agreement: float = Field(
        0.9, ge=0, le=1, description="Share of compared pairs where student and teacher agree."
    )
    max_error_margin: float = Field(
        0.02, ge=0, le=1, description="How far the student's error ratio may exceed the teacher's."
    )
    max_latency_factor: float = Field(
        2.0, gt=0, description="Student p95 latency may be at most this times the teacher's."
    )
    max_fallback_ratio: float = Field(
        0.2,
        ge=0,
        le=1,
        description="Ceiling on the share of student answers replaced (invalid JSON, errors, "
        "timeouts; low-confidence ones too when the student has no calibrated cascade).",
    )
    max_drift: dict[str, float] = Field(
        default_factory=dict,
        description="Drift method -> score that fails a step; methods not named here use "
        "the route's drift act thresholds.",
    )
    shadow_share: float = Field(
        1.0, ge=0, le=1, description="Share of teacher-served requests also sent to the candidate."
    )
    holdout_share: float = Field(
        0.05,
        ge=0,
        le=1,
        description="Share of student-served requests also sent to the teacher, so quality "
        "keeps being measured during the canary and after promotion.",
    )

    @field_validator("steps")
    @classmethod
    def _steps_rise_within_100(cls, steps: list[int]) -> list[int]:
        if not steps:
            raise ValueError("canary.steps needs at least one step, e.g. [5, 25, 50, 100]")
        if any(not 1 <= s <= 100 for s in steps):
            raise ValueError("canary.steps are percentages between 1 and 100")
        if steps != sorted(set(steps)):
            raise ValueError("canary.steps must rise strictly, e.g. [5, 25, 50, 100]")
        return steps

    @field_validator("max_drift")
    @classmethod
    def _known_drift_methods(cls, max_drift: dict[str, float]) -> dict[str, float]:
        for method, threshold in max_drift.items():
            if method not in THRESHOLD_KEYS:
                raise ValueError(
                    f"canary.max_drift names unknown method {method!r}; "
                    f"use one of {sorted(THRESHOLD_KEYS)}"
                )
            if threshold < 0:
                raise ValueError(f"canary.max_drift[{method!r}] must be >= 0")
        return max_drift
