"""Per-route settings of the retrain job and its schedule (issue 4).

A section of each [[routes]] entry: ``[routes.retrain]``.

Defaults come from measurements on the tiny base (see ../shared/FINDINGS.md): LoRA r=8 on all
linear layers of a briefly pretrained 2-layer base reaches ~99% exact match on a 10-intent JSON
task in well under a minute of one CPU thread.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# Gate metrics where a smaller value is better; the threshold is a maximum for these.
LOWER_IS_BETTER = frozenset({"latency_p50_ms", "latency_p95_ms"})
GATE_METRICS = frozenset(
    {"exact_match", "token_f1", "json_valid", "tool_call_match", "length_ratio"} | LOWER_IS_BETTER
)


class AugmentSettings(BaseModel):
    """``[routes.retrain.augment]``: synthetic training rows that teach invariance to names.

    Rare spans of training prompts (names, numbers, rare words: `curation.spans`) are replaced
    by other plausible ones, from the route's own vocabulary or made up; where a replaced span
    appears in the teacher's answer it is replaced there too (copy), or the teacher answers the
    new prompt (teacher, within the budget). Synthetic rows are tagged, weighted, never enter
    eval, and counted in the student's manifest.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(
        True,
        description="Add synthetic rows to training. Measured on triage with unseen names "
        "(bench/novel_names.py): novel-slice exact match rises from ~0.6 to ~1.0.",
    )
    copies: int = Field(
        1, ge=1, le=10, description="Synthetic rows made from each training row with spans."
    )
    weight: float = Field(1.0, gt=0, description="Training weight of a synthetic row (x its own).")
    vocabulary: Literal["route", "generated", "both"] = Field(
        "both",
        description="Where substitutes come from: the route's own spans of the same kind, "
        "made-up words and numbers of the same shape, or either at random.",
    )
    relabel: Literal["copy", "teacher"] = Field(
        "copy",
        description="copy: the answer keeps its labels, a replaced span replaced in it too; "
        "teacher: the teacher answers each new prompt (needs the route's teacher key).",
    )
    teacher_budget_usd: float = Field(
        1.0, ge=0, description="Most USD the teacher may be paid for relabelling per retrain."
    )


class RetrainSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # --- schedule -------------------------------------------------------------------------
    schedule: bool = Field(
        True, description="Let `apprentice serve` curate and retrain this route on its own."
    )
    min_new_rows: int = Field(
        500, ge=1, description="Retrain once this many rows were sealed since the last dataset."
    )
    every_hours: float | None = Field(
        24.0,
        gt=0,
        description="Also retrain this often when any new row was sealed (null: rows only).",
    )
    asked_min_new_rows: int = Field(
        300,
        ge=1,
        description="A retrain asked for by drift or the admin API waits for this many rows "
        "sealed after the ask, so the new student sees enough of the traffic that changed.",
    )

    # --- base and method ------------------------------------------------------------------
    base: str = Field(
        "tiny", description="`tiny` (built per route) or the path of a local HF causal-LM dir."
    )
    method: Literal["lora", "full"] = Field(
        "lora", description="LoRA adapter (default) or full fine-tuning (sensible for `tiny`)."
    )
    tiny_hidden_size: int = Field(128, ge=16, le=1024, description="Tiny base hidden size.")
    tiny_layers: int = Field(2, ge=1, le=12, description="Tiny base decoder layers.")
    tiny_vocab_size: int = Field(
        1024, ge=300, le=65536, description="Tiny tokenizer vocabulary (bytes and route words)."
    )
    tiny_tokenizer: Literal["words", "bpe"] = Field(
        "words",
        description="words: bytes plus whole template words, never a span's word, so any name "
        "is spelled the same in prompt and answer and can be copied (issue 17); bpe: "
        "byte-level BPE on the route's text.",
    )
    slots: Literal["auto", "on", "off"] = Field(
        "auto",
        description="Slots (retrain/slots.py): the student sees a marker where the prompt names "
        "something and writes it where the answer copies it; the proxy fills in the names. "
        "auto: for the tiny base on routes whose answers copy (a real base copies by itself).",
    )
    pretrain_steps: int = Field(
        300, ge=0, description="Causal-LM steps on the route's unlabeled text for the tiny base."
    )
    pretrain_lr: float = Field(3e-3, gt=0, description="Learning rate of tiny-base pretraining.")

    # --- LoRA -----------------------------------------------------------------------------
    lora_r: int = Field(8, ge=1, le=256, description="LoRA rank.")
    lora_alpha: float = Field(16.0, gt=0, description="LoRA scaling numerator (alpha / r).")
    lora_dropout: float = Field(0.0, ge=0, lt=1, description="LoRA dropout.")
    lora_target_modules: list[str] = Field(
        default_factory=lambda: [
            *("q_proj", "k_proj", "v_proj", "o_proj"),
            *("gate_proj", "up_proj", "down_proj"),
        ],
        description="Linear layers that get adapters (Llama names).",
    )
    lora_modules_to_save: list[str] = Field(
        default_factory=list,
        description="Modules trained in full beside the adapter, e.g. ['lm_head']. Measured on "
        "tiny (triage, 600 steps): lm_head 93.5% exact match vs 100% without, so none.",
    )

    # --- optimisation ---------------------------------------------------------------------
    max_steps: int = Field(
        900,
        ge=1,
        description="Optimiser steps (cosine schedule over them). Triage, 2,000 pairs, LoRA: "
        "97% after 600, 100% after 900 (FINDINGS: rules can click late).",
    )
    max_seconds: float | None = Field(
        None, gt=0, description="Stop training after this many seconds even before max_steps."
    )
    batch_size: int = Field(32, ge=1, description="Sequences per optimiser step.")
    learning_rate: float | None = Field(
        None, gt=0, description="Peak learning rate; null: 5e-3 for LoRA, 3e-3 for full."
    )
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    warmup_steps: int = Field(20, ge=0, description="Linear warm-up steps.")
    max_length: int = Field(512, ge=16, description="Longest training sequence in tokens.")
    seed: int = Field(0, description="Seed for data order, initialisation and sampling.")
    num_threads: int = Field(
        1, ge=1, description="torch CPU threads; more than the free cores is slower (measured)."
    )

    # --- distillation ---------------------------------------------------------------------
    distill_alpha: float = Field(
        0.5, ge=0, le=1, description="Weight of the soft-target KL term when logprobs exist."
    )
    distill_temperature: float = Field(1.0, gt=0, description="Softmax temperature of the KL term.")
    replay_fraction: float = Field(
        0.2,
        ge=0,
        le=1,
        description="Rows of the previous dataset mixed in on warm start, as a share of new rows.",
    )
    warm_start: bool = Field(True, description="Start from the route's current adapter if any.")

    # --- evaluation and gate --------------------------------------------------------------
    eval_every: int = Field(100, ge=1, description="Steps between eval-loss/exact-match points.")
    eval_sample: int = Field(
        64, ge=1, description="Eval prompts generated at each training eval point (for the plot)."
    )
    max_new_tokens: int = Field(256, ge=1, description="Longest generated answer at evaluation.")
    latency_samples: int = Field(
        32, ge=1, description="Eval prompts generated one at a time to measure latency."
    )
    gate: dict[str, float] = Field(
        default_factory=lambda: {"exact_match": 0.9},
        description="Metric thresholds a candidate must pass (latency_* maxima, others minima).",
    )
    beat_margin: float = Field(
        0.0,
        description="A candidate's exact match must be >= the current student's plus this margin.",
    )
    gate_novel: dict[str, float] | None = Field(
        None,
        description="Thresholds the novel eval slice must pass (rows naming spans train never "
        "had); null: the same as `gate`. `gate` itself applies to the in_distribution slice.",
    )

    # --- the cascade ----------------------------------------------------------------------
    target_agreement: float = Field(
        0.97,
        gt=0,
        le=1,
        description="The cascade serves a student's answer only above the confidence threshold "
        "at which, on eval, this share of served answers matched the teacher.",
    )
    cascade_folds: int = Field(
        5, ge=2, le=20, description="Folds of the cross-validated coverage and agreement."
    )
    augment: AugmentSettings = Field(default_factory=AugmentSettings)

    @field_validator("gate", "gate_novel")
    @classmethod
    def _known_gate_metrics(cls, gate: dict[str, float] | None) -> dict[str, float] | None:
        if gate is None:
            return None
        unknown = sorted(set(gate) - GATE_METRICS)
        if unknown:
            raise ValueError(f"unknown gate metric(s) {unknown}; known: {sorted(GATE_METRICS)}")
        return gate

    @model_validator(mode="after")
    def _warmup_within_steps(self) -> RetrainSettings:
        if self.warmup_steps >= self.max_steps:
            raise ValueError("warmup_steps must be smaller than max_steps")
        return self

    def peak_lr(self) -> float:
        if self.learning_rate is not None:
            return self.learning_rate
        return 5e-3 if self.method == "lora" else 3e-3
