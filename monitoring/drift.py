"""Drift of live traffic away from the data the current student was trained on.

Reference statistics are computed by curation (`curation.reference`) on the train split and
saved in the dataset's manifest.json under `"reference"`; the live side is a sliding window of
prompts per route kept by `monitoring.drift_monitor.DriftMonitor`. Format 1 of the reference:

    {
      "format": 1,
      "tokenizer": "words-v1",                     # `prompt_tokens`
      "text": "non-system messages",               # `prompt_text`
      "rows": 9000,
      "prompt_length": {"unit": "tokens", "edges": [e0, ..., ek], "counts": [c0, ..., ck-1]},
      "answer_length": {"unit": "tokens", "edges": [...], "counts": [...]},
      "tokens": {"total": 123456, "vocabulary": 5321,
                 "top": [["the", 0.041], ...], "other_share": 0.31},
      "clusters": {"c0": 0.25, ...}                # read, not scored: live prompts have no cluster
    }

Length edges are quantiles of the train lengths, so each bin holds about the same number of
rows. Bin i holds [edges[i], edges[i+1]); the first bin also takes anything shorter and the
last anything longer (`bin_counts` is given the interior edges, `edges[1:-1]`).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from curation.pairs import prompt_text as _curation_prompt_text
from curation.reference import tokenize as _curation_tokenize
from curation.words import TOKENIZER

# Shares are floored at this before PSI takes logarithms: an empty bin on one side would
# otherwise make the score infinite. A bin holding share s on one side and nothing on the other
# then adds about s * ln(s / 1e-4), i.e. ~9 * s: large, finite, and comparable between runs.
PSI_EPSILON = 1e-4
REFERENCE_FORMAT = 1


def prompt_tokens(text: str) -> list[str]:
    """Tokens drift counts: lowercased runs of word characters, and each other non-space
    character on its own (`"GPU x2, fast!"` -> `["gpu", "x2", ",", "fast", "!"]`).

    This is curation's `words-v1` tokenizer itself, so live and reference profiles always
    count the same way.
    """
    return _curation_tokenize(text)


def prompt_text(messages: Sequence[Mapping[str, Any]]) -> str:
    """The text of a chat request that drift measures: the non-system messages' text (and
    tool-call arguments), one per line, exactly as curation measured the training prompts."""
    return _curation_prompt_text([dict(m) for m in messages])


def quantile_edges(values: Sequence[float], bins: int = 10) -> list[float]:
    """Full bin edges at the values' quantiles (min and max included); ties collapse bins."""
    if not values:
        return [0.0, 0.0]
    edges = np.unique(np.quantile(np.asarray(values, dtype=float), np.linspace(0, 1, bins + 1)))
    return [float(e) for e in edges] if len(edges) > 1 else [float(edges[0])] * 2


def bin_counts(values: Sequence[float], edges: Sequence[float]) -> list[int]:
    """How many values fall in each bin of a histogram with these (full) edges."""
    inner = np.asarray(edges[1:-1], dtype=float)
    index = np.searchsorted(inner, np.asarray(values, dtype=float), side="right")
    return [int(c) for c in np.bincount(index, minlength=len(edges) - 1)]


def length_histogram(lengths: Sequence[float], bins: int = 10) -> dict[str, Any]:
    """`{"unit", "edges", "counts"}` of a sample of lengths, with quantile bins."""
    edges = quantile_edges(lengths, bins)
    return {"unit": "tokens", "edges": edges, "counts": bin_counts(lengths, edges)}


def build_reference(prompts: Iterable[str], answers: Iterable[str] = ()) -> dict[str, Any]:
    """Reference statistics (format 1) of texts, for tests and demos; curation's
    `reference_stats` writes the same shape for real datasets."""
    tokenised = [prompt_tokens(p) for p in prompts]
    counts: Counter[str] = Counter()
    for tokens in tokenised:
        counts.update(tokens)
    total = sum(counts.values())
    return {
        "format": REFERENCE_FORMAT,
        "tokenizer": TOKENIZER,
        "text": "non-system messages",
        "rows": len(tokenised),
        "prompt_length": length_histogram([len(t) for t in tokenised]),
        "answer_length": length_histogram([len(prompt_tokens(a)) for a in answers]),
        "tokens": {
            "total": total,
            "vocabulary": len(counts),
            "top": [[t, c / total] for t, c in counts.most_common()],
            "other_share": 0.0,
        },
        "clusters": {},
    }


def psi(expected: Sequence[float], actual: Sequence[float], eps: float = PSI_EPSILON) -> float:
    """Population stability index of two histograms over the same bins (counts or shares).

    PSI = sum_i (a_i - e_i) * ln(a_i / e_i) over bin shares, each floored at `eps`.
    """
    e = np.asarray(expected, dtype=float)
    a = np.asarray(actual, dtype=float)
    if e.shape != a.shape or e.sum() <= 0 or a.sum() <= 0:
        raise ValueError("psi needs two non-empty histograms over the same bins")
    e = np.maximum(e / e.sum(), eps)
    a = np.maximum(a / a.sum(), eps)
    return float(np.sum((a - e) * np.log(a / e)))


def length_psi(reference: Mapping[str, Sequence[float]], lengths: Sequence[float]) -> float:
    """PSI of live lengths against a reference `{"edges", "counts"}` histogram."""
    return psi(reference["counts"], bin_counts(lengths, reference["edges"]))


def jensen_shannon(p: Sequence[float], q: Sequence[float]) -> float:
    """Jensen-Shannon divergence (base 2, so within [0, 1]) of two distributions."""
    pa = np.asarray(p, dtype=float)
    qa = np.asarray(q, dtype=float)
    pa, qa = pa / pa.sum(), qa / qa.sum()
    m = (pa + qa) / 2

    def kl(x: np.ndarray[Any, Any]) -> float:
        # Terms with x = 0 contribute 0; m > 0 wherever x > 0, so no smoothing is needed.
        nz = x > 0
        return float(np.sum(x[nz] * np.log2(x[nz] / m[nz])))

    return min(1.0, max(0.0, (kl(pa) + kl(qa)) / 2))


def token_jsd(top: Mapping[str, float], other_share: float, live: Mapping[str, int]) -> float:
    """JSD of the live token counts against the reference token profile.

    Both sides are projected onto the reference's top tokens plus one "other" bucket: the
    reference's `other_share`, and the live tokens outside its top list.
    """
    tokens = list(top)
    ref = [top[t] for t in tokens] + [other_share]
    seen = [live.get(t, 0) for t in tokens]
    cur = [*seen, sum(live.values()) - sum(seen)]
    return jensen_shannon(ref, cur)


def unseen_rate(top: Mapping[str, float], live: Mapping[str, int]) -> float:
    """Share of live tokens absent from the reference profile (0 when there are none)."""
    total = sum(live.values())
    if total == 0:
        return 0.0
    return sum(c for t, c in live.items() if t not in top) / total


def disagreement_rate(verdicts: Iterable[str]) -> float | None:
    """Share of shadow pairs that disagree; errors are not counted (they are not answers)."""
    counts = Counter(verdicts)
    judged = counts["agree"] + counts["disagree"]
    return counts["disagree"] / judged if judged else None


@dataclass(frozen=True)
class Reference:
    """Parsed, validated reference statistics (see the module docstring for the JSON)."""

    prompt_length: Mapping[str, Sequence[float]]
    answer_length: Mapping[str, Sequence[float]] | None
    top_tokens: Mapping[str, float]
    other_share: float

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> Reference:
        """Check the statistics curation wrote; a `ValueError` says which part is wrong."""
        if raw.get("format", REFERENCE_FORMAT) != REFERENCE_FORMAT:
            raise ValueError(f"drift reference format {raw.get('format')} is not supported")
        if raw.get("tokenizer", TOKENIZER) != TOKENIZER:
            raise ValueError(f"drift reference uses tokenizer {raw.get('tokenizer')!r}")
        try:
            tokens = raw["tokens"]
            answers = raw.get("answer_length")
            prompts = _histogram(raw["prompt_length"], "prompt_length")
            if prompts is None:
                raise ValueError("prompt_length counts no prompts")
            reference = cls(
                prompt_length=prompts,
                answer_length=_histogram(answers, "answer_length") if answers else None,
                top_tokens={str(t): float(share) for t, share in tokens["top"]},
                other_share=float(tokens["other_share"]),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"drift reference is missing or malformed: {exc}") from exc
        if sum(reference.top_tokens.values()) + reference.other_share > 1.0 + 1e-3:  # rounding
            raise ValueError("drift reference token shares add up to more than 1")
        return reference


def _histogram(raw: Mapping[str, Any], name: str) -> Mapping[str, Sequence[float]] | None:
    edges = [float(e) for e in raw["edges"]]
    counts = [float(c) for c in raw["counts"]]
    if len(edges) != len(counts) + 1 or edges != sorted(edges) or any(map(math.isnan, edges)):
        raise ValueError(f"{name} needs ascending edges, one more than its counts")
    # a histogram of nothing (an empty answer sample) cannot be compared against
    return {"edges": edges, "counts": counts} if sum(counts) > 0 else None
