"""Drift settings: defaults, threshold lookup and the checks that reject nonsense."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from monitoring.settings import DriftSettings


def test_defaults_follow_the_usual_psi_bands() -> None:
    settings = DriftSettings()
    assert settings.thresholds("prompt_length_psi") == (0.1, 0.25)
    assert settings.thresholds("output_length_psi") == (0.1, 0.25)
    assert settings.pause_canary and not settings.trigger_retrain


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"jsd_warn": 0.3, "jsd_act": 0.2}, "jsd_warn"),
        ({"window_size": 50, "min_prompts": 100}, "min_prompts"),
        ({"psi_warn": -1}, "greater than or equal"),
        ({"unknown": 1}, "Extra inputs"),
    ],
)
def test_rejects_inconsistent_settings(values: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        DriftSettings.model_validate(values)
