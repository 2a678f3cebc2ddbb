"""Per-route settings of the canary controller and drift detection; sections of [[routes]]."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


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
        0.2, ge=0, le=1, description="Ceiling on the share of student answers replaced."
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
    confidence_floor: float | None = Field(
        -1.0,
        le=0,
        description="Mean token logprob below which the teacher answers instead (None: off).",
    )
    student_timeout_s: float = Field(
        10.0, gt=0, description="Seconds a student may take before the teacher answers."
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


class DriftSettings(BaseModel):
    """When and how drift of live traffic from the student's training data is scored.

    Scores past a `*_warn` threshold only alert; past `*_act` they also take the actions
    below. PSI bands follow the usual reading: < 0.1 stable, 0.1-0.25 shifting, > 0.25 moved.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(True, description="Score drift for this route.")
    window_size: int = Field(
        1000, ge=10, le=1_000_000, description="Live prompts kept in the sliding window."
    )
    min_prompts: int = Field(
        100, ge=1, description="Prompts the window needs before scores are exported."
    )
    interval_s: float = Field(60.0, gt=0, description="Seconds between drift runs.")
    min_shadow_pairs: int = Field(
        30, ge=1, description="Judged shadow pairs needed before disagreement is scored."
    )
    psi_warn: float = Field(0.1, ge=0, description="PSI (prompt and output length) warn level.")
    psi_act: float = Field(0.25, ge=0, description="PSI act level.")
    jsd_warn: float = Field(0.1, ge=0, le=1, description="Token JSD (base 2, 0-1) warn level.")
    jsd_act: float = Field(0.2, ge=0, le=1, description="Token JSD act level.")
    unseen_warn: float = Field(
        0.05, ge=0, le=1, description="Share of live tokens unseen in the reference: warn."
    )
    unseen_act: float = Field(0.15, ge=0, le=1, description="Unseen-token share: act.")
    disagreement_warn: float = Field(
        0.2, ge=0, le=1, description="Share of shadow pairs that disagree: warn."
    )
    disagreement_act: float = Field(0.35, ge=0, le=1, description="Shadow disagreement: act.")
    pause_canary: bool = Field(
        True,
        description="A score past its act level takes a promoted student off traffic "
        "(back to the teacher); candidates are judged by their own canary checks.",
    )
    trigger_retrain: bool = Field(
        False, description="A score past its act level starts a retrain on fresh data."
    )

    @model_validator(mode="after")
    def _warn_below_act(self) -> DriftSettings:
        for method in ("psi", "jsd", "unseen", "disagreement"):
            warn, act = getattr(self, f"{method}_warn"), getattr(self, f"{method}_act")
            if warn > act:
                raise ValueError(
                    f"drift.{method}_warn ({warn}) must not exceed {method}_act ({act})"
                )
        if self.min_prompts > self.window_size:
            raise ValueError("drift.min_prompts must not exceed drift.window_size")
        return self

    def thresholds(self, method: str) -> tuple[float, float]:
        """(warn, act) for a drift method name such as `prompt_length_psi`."""
        key = THRESHOLD_KEYS[method]
        return getattr(self, f"{key}_warn"), getattr(self, f"{key}_act")


# Which threshold pair applies to each exported drift method.
THRESHOLD_KEYS = {
    "prompt_length_psi": "psi",
    "output_length_psi": "psi",
    "token_jsd": "jsd",
    "unseen_token_rate": "unseen",
    "disagreement_rate": "disagreement",
}
