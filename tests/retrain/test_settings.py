from __future__ import annotations

import pytest
from pydantic import ValidationError

from apprentice.config import ConfigError, config_from_dict
from retrain.settings import RetrainSettings


def test_settings_reject_unknown_keys_and_gate_metrics() -> None:
    with pytest.raises(ValidationError):
        RetrainSettings(gate={"accuracy": 0.9})
    with pytest.raises(ValidationError):
        RetrainSettings.model_validate({"lora_rank": 8})
    with pytest.raises(ValidationError):
        RetrainSettings(max_steps=10, warmup_steps=10)
    assert RetrainSettings(method="full").peak_lr() == 3e-3


def test_route_section_is_read_from_the_config_file() -> None:
    raw = {
        "routes": [
            {
                "name": "r",
                "teacher": "openai/x",
                "retrain": {"max_steps": 50, "gate": {"exact_match": 0.95}},
            }
        ]
    }
    config = config_from_dict(raw, environ={})
    assert config.route("r").retrain.max_steps == 50
    assert config.route("r").retrain.gate == {"exact_match": 0.95}
    raw["routes"][0]["retrain"] = {"max_step": 50}
    with pytest.raises(ConfigError, match="max_step"):
        config_from_dict(raw, environ={})
