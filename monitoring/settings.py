"""Per-route settings of drift detection: the ``[routes.drift]`` section."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


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
