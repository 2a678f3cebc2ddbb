"""Per-route settings of the curation job (issue 3); a section of each [[routes]] entry.

Every knob has a default that works on ordinary chat traffic, so a route needs no
``[routes.curation]`` section at all. Regular expressions are matched case-insensitively.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

# The "I can't help with that" family, matched against the start of an answer's text only:
# a refusal opens the answer, while the same words deep inside a helpful answer are harmless.
DEFAULT_REFUSAL_PATTERNS: tuple[str, ...] = (
    r"^\W*(?:i['’]?m|i am) (?:so |very |really )?(?:sorry|afraid)\b.{0,40}?"
    r"\b(?:can(?:not|['’]?t)|unable|won['’]?t|not able)\b",
    r"^\W*i (?:can(?:not|['’]?t)|won['’]?t|am unable to|['’]?m unable to|am not able to) "
    r"(?:help|assist|comply|provide|do that|fulfil|fulfill|answer)",
    r"^\W*(?:unfortunately|sorry),? i (?:can(?:not|['’]?t)|am unable|won['’]?t)",
    r"^\W*as an ai(?: language model)?,? i (?:can(?:not|['’]?t)|am unable|don['’]?t)",
    r"^\W*i (?:must|have to) (?:respectfully )?decline",
)


SpanDetector = Literal["capitalised", "numbers", "rare_words", "slot_words", "copied"]


def _default_detectors() -> list[SpanDetector]:
    return ["copied", "capitalised", "numbers", "slot_words"]


class CurationSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # --- select -----------------------------------------------------------------------------
    one_teacher_per_task: bool = Field(
        True,
        description="Keep, per task, only the rows of the newest (teacher, system prompt) "
        "partition, so a student never learns two behaviours at once.",
    )

    # --- quality ----------------------------------------------------------------------------
    refusal_patterns: list[str] = Field(
        default_factory=lambda: list(DEFAULT_REFUSAL_PATTERNS),
        description="Regexes (case-insensitive) that mark an answer as a refusal.",
    )
    refusal_scan_chars: int = Field(
        300, ge=1, description="How many leading characters of an answer the patterns see."
    )
    max_context_tokens: int = Field(
        4096,
        ge=16,
        description="The student's context length; longer prompt+answer pairs are dropped.",
    )

    # --- feedback ---------------------------------------------------------------------------
    negative_below: float = Field(
        0.0, ge=-1, le=1, description="A row whose latest feedback score is below this is dropped."
    )
    positive_weight: float = Field(
        1.0,
        ge=0,
        description="Extra training weight per unit of positive score (score 1 -> weight 1+this).",
    )

    # --- scrub ------------------------------------------------------------------------------
    scrub: Literal["mask", "drop", "off"] = Field(
        "mask",
        description="mask: replace PII and secrets with typed placeholders; drop: drop rows "
        "that hold any; off: keep text as logged.",
    )

    # --- dedupe -----------------------------------------------------------------------------
    dedupe_threshold: float = Field(
        0.85,
        gt=0,
        le=1,
        description="Jaccard similarity of word shingles above which "
        "two prompts are near duplicates.",
    )
    shingle_size: int = Field(3, ge=1, le=8, description="Words per shingle for dedupe.")
    num_perm: int = Field(
        128, ge=16, le=512, description="MinHash permutations (more: finer Jaccard estimate)."
    )
    seed: int = Field(1, ge=0, description="Seed of the MinHash permutations.")

    # --- balance ----------------------------------------------------------------------------
    cluster_similarity: float = Field(
        0.5,
        gt=0,
        le=1,
        description="Cosine of TF-IDF word vectors at which a prompt joins a cluster, and "
        "at which two clusters' centroids merge.",
    )
    max_clusters: int = Field(32, ge=1, le=1024, description="Most prompt clusters per task.")
    cluster_cap_share: float = Field(
        0.25,
        gt=0,
        le=1,
        description="Largest share of the dataset one prompt cluster may hold (raised to "
        "1/clusters when there are too few clusters to meet it).",
    )
    max_rows: int = Field(
        100_000,
        ge=100,
        description="Most rows a dataset version keeps: past it every cluster's cap tightens "
        "alike. It bounds the memory of curation (only kept rows are held in Python) and a "
        "student learns a route from far fewer pairs than a busy route logs in a day.",
    )
    cluster_cap_min_rows: int = Field(
        50, ge=0, description="A cluster is never capped below this many rows."
    )
    oversample: bool = Field(
        False, description="Raise the training weight of rare clusters (rows are not copied)."
    )
    rare_share: float = Field(
        0.02, gt=0, le=1, description="Clusters below this share of the dataset count as rare."
    )
    max_oversample: float = Field(
        5.0, ge=1, description="Largest weight factor oversampling gives a rare cluster."
    )

    # --- novel ------------------------------------------------------------------------------
    span_detectors: list[SpanDetector] = Field(
        default_factory=_default_detectors,
        description="How rare spans (names, numbers, rare words) are found in prompts, for the "
        "novel eval slice and for augmentation (curation/spans.py; measured in "
        "bench/novel_names.py).",
    )
    rare_word_share: float = Field(
        0.05, gt=0, le=1, description="A word in at most this share of prompts is rare."
    )
    slot_min_fillers: int = Field(
        5,
        ge=2,
        description="A context is a slot when this many different rare words fill it "
        "(slot_words); 5 found the triage items with no template word, 3 found 9 template words.",
    )
    novel_share: float = Field(
        0.05,
        ge=0,
        lt=1,
        description="Least share of rows the novel eval slice takes (whole groups of rare "
        "spans held out of train); 0: no novel slice.",
    )
    novel_max_share: float = Field(
        0.15, gt=0, lt=1, description="Largest share of rows the novel slice may take."
    )
    novel_min_rows: int = Field(
        10, ge=1, description="Fewer novel rows than this: no novel slice (the manifest says so)."
    )

    # --- split ------------------------------------------------------------------------------
    eval_share: float = Field(
        0.1, gt=0, lt=1, description="Least share of rows held out for evaluation."
    )
    eval_min_rows: int = Field(
        20, ge=0, description="Least number of eval rows (never more than half the dataset)."
    )

    # --- reference statistics ---------------------------------------------------------------
    length_bins: int = Field(
        10, ge=2, le=100, description="Quantile bins of the length histograms."
    )
    top_tokens: int = Field(
        1000, ge=10, le=100_000, description="Tokens kept in the reference frequency profile."
    )
    reference_rows: int = Field(
        1000,
        ge=10,
        description="The newest train rows the reference describes: drift compares live "
        "traffic with what the student was trained for lately, not with its whole history.",
    )

    @field_validator("refusal_patterns")
    @classmethod
    def _patterns_compile(cls, patterns: list[str]) -> list[str]:
        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(
                    f"refusal pattern {pattern!r} is not a valid regex: {exc}"
                ) from None
        return patterns
