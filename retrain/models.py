"""Loading a base, and wrapping it for training (LoRA or full) or serving (an adapter).

Everything loads from local folders with `local_files_only=True`: the Hugging Face hub is never
contacted (the entry points also set the offline flags before transformers is imported).
Students are loaded through the student contract (`retrain.students.load_student`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from retrain.settings import RetrainSettings


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def load_base(
    path: Path, dtype: torch.dtype | None = None, device: str | None = None
) -> tuple[Any, Any]:
    """A local causal-LM folder's model and tokenizer (pad token falls back to EOS).

    The model goes to `device` (default: CUDA when present, else CPU).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not (path / "config.json").exists():
        raise FileNotFoundError(
            f"{path} is not a Hugging Face model folder (no config.json); "
            "pass --base tiny or the path of a local causal-LM directory."
        )
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    if tokenizer.chat_template is None:
        raise ValueError(f"The tokenizer in {path} has no chat template; add one or use tiny.")
    model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, dtype=dtype)
    return model.to(device or default_device()), tokenizer


def with_lora(model: Any, settings: RetrainSettings) -> Any:
    """A fresh trainable LoRA adapter on `model`."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=settings.lora_r,
        lora_alpha=settings.lora_alpha,
        lora_dropout=settings.lora_dropout,
        target_modules=list(settings.lora_target_modules),
        modules_to_save=list(settings.lora_modules_to_save) or None,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)


def with_adapter(model: Any, adapter_dir: Path, trainable: bool) -> Any:
    """`model` with a saved adapter loaded (trainable for a warm start)."""
    from peft import PeftModel

    return PeftModel.from_pretrained(model, adapter_dir, is_trainable=trainable)
