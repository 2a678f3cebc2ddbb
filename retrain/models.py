"""Loading bases and students, and wrapping a base for training (LoRA or full).

Everything loads from local folders; the Hugging Face hub is never contacted (offline flags
set before any load, and `local_files_only=True`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from retrain.registry import base_dir, read_manifest
from retrain.settings import RetrainSettings


def offline() -> None:
    """Forbid hub access for this process; a missing local file must fail, not download."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def load_base(
    path: Path, dtype: torch.dtype | None = None, device: str | None = None
) -> tuple[Any, Any]:
    """A local causal-LM folder's model and tokenizer (pad token falls back to EOS).

    The model goes to `device` (default: CUDA when present, else CPU).
    """
    offline()
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


def student_base_path(student: Path, manifest: dict[str, Any]) -> Path:
    """The base a student was trained on; a tiny base moves with its data_dir."""
    path = Path(manifest["base_path"])
    if manifest.get("base") == "tiny" and not path.exists():
        path = base_dir(student.parent.parent.parent, student.parent.name)
    return path


def load_student(student: Path, merge: bool = True, device: str | None = None) -> tuple[Any, Any]:
    """A registered student ready for generation: (model in eval mode, tokenizer).

    LoRA students are loaded on their base and, with `merge`, folded into it for faster
    serving; full fine-tunes are loaded from the student folder itself.
    """
    manifest = read_manifest(student)
    if manifest["method"] == "full":
        model, tokenizer = load_base(student, device=device)
    else:
        model, tokenizer = load_base(student_base_path(student, manifest), device=device)
        model = with_adapter(model, student, trainable=False)
        if merge:
            model = model.merge_and_unload()
    model.eval()
    return model, tokenizer
