"""Drift of live traffic away from the data the current student was trained on.

Reference statistics are computed once by curation (`build_reference`) and saved in the
dataset manifest under `"reference"`; the live side is a sliding window of prompts per route
kept by `DriftMonitor`, which exports the scores as `apprentice_drift_score{route,method}`.

Reference shape (JSON-compatible; every key but `prompt_length` and `tokens` is optional):

    {
      "prompt_length": {"edges": [e1, ..., ek], "counts": [c0, ..., ck]},
      "output_length": {"edges": [...], "counts": [...]},        # teacher answers, for students
      "tokens": {"top": {"token": share, ...}, "vocab_size": int},
      "cluster_shares": {"cluster-id": share, ...},              # recorded, not scored yet
    }

Lengths are counted in `prompt_tokens` tokens. `edges` are ascending interior cut points taken
at reference quantiles; `counts` has one more entry than `edges`: bin 0 is (-inf, e1), bin i is
[ei, ei+1), the last bin is [ek, +inf). `top` maps the most frequent reference tokens (up to
`top_k`, 20,000 by default) to their share of all reference tokens; `vocab_size` counts every
distinct reference token, so `vocab_size > len(top)` says the profile was truncated.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

# Shares are floored at this before PSI takes logarithms: an empty bin on one side would
# otherwise make the score infinite. A bin holding share s on one side and nothing on the other
# then adds about s * ln(s / 1e-4), i.e. ~9 * s: large, finite, and comparable between runs.
PSI_EPSILON = 1e-4
OTHER_TOKEN = "\x00other"  # bucket for tokens outside the reference's top list; no real token

# Runs of letters, or runs of digits, on lowercased text: language-agnostic enough for drift
# (which compares vocabularies, not meanings) and free of any model's tokenizer.
_TOKEN = re.compile(r"[^\W\d_]+|\d+")


def prompt_tokens(text: str) -> list[str]:
    """Lowercase word and number tokens: `"GPU x2, fast!"` -> `["gpu", "x", "2", "fast"]`.

    Both curation (the reference) and the proxy (live traffic) tokenise with this function,
    so the two profiles are comparable.
    """
    return _TOKEN.findall(text.lower())


def prompt_text(messages: Sequence[Mapping[str, Any]]) -> str:
    """The text of a chat request that drift looks at: every message's text, one per line.

    String contents are taken whole; list contents (OpenAI content parts) contribute their
    `text` parts. Assistant turns are included because they are part of what the student reads.
    """
    parts: list[str] = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts.extend(
                str(part["text"]) for part in content if isinstance(part, dict) and "text" in part
            )
    return "\n".join(parts)


def quantile_edges(values: Sequence[float], bins: int = 10) -> list[float]:
    """Interior cut points at the values' quantiles, deduplicated (ties collapse bins)."""
    if not values:
        return []
    cuts = np.quantile(np.asarray(values, dtype=float), np.linspace(0, 1, bins + 1)[1:-1])
    return [float(x) for x in np.unique(cuts)]


def bin_counts(values: Sequence[float], edges: Sequence[float]) -> list[int]:
    """How many values fall in each bin described by `edges` (see the module docstring)."""
    index = np.searchsorted(
        np.asarray(edges, dtype=float), np.asarray(values, dtype=float), "right"
    )
    return [int(c) for c in np.bincount(index, minlength=len(edges) + 1)]


def length_histogram(lengths: Sequence[float], bins: int = 10) -> dict[str, list[Any]]:
    """`{"edges", "counts"}` for a reference sample of lengths, with quantile bins."""
    edges = quantile_edges(lengths, bins)
    return {"edges": edges, "counts": bin_counts(lengths, edges)}


def token_profile(token_lists: Iterable[Sequence[str]], top_k: int = 20_000) -> dict[str, Any]:
    """`{"top": {token: share}, "vocab_size": n}` of a reference sample of tokenised texts."""
    counts: Counter[str] = Counter()
    for tokens in token_lists:
        counts.update(tokens)
    total = sum(counts.values())
    top = {t: c / total for t, c in counts.most_common(top_k)} if total else {}
    return {"top": top, "vocab_size": len(counts)}


def build_reference(
    prompts: Iterable[str],
    outputs: Iterable[str] | None = None,
    *,
    bins: int = 10,
    top_k: int = 20_000,
) -> dict[str, Any]:
    """The reference statistics of a training set, in the shape `DriftMonitor` reads.

    `prompts` are `prompt_text` of each training request, `outputs` the teacher answers.
    """
    tokenised = [prompt_tokens(p) for p in prompts]
    reference: dict[str, Any] = {
        "prompt_length": length_histogram([len(t) for t in tokenised], bins),
        "tokens": token_profile(tokenised, top_k),
    }
    if outputs is not None:
        lengths = [len(prompt_tokens(o)) for o in outputs]
        reference["output_length"] = length_histogram(lengths, bins)
    return reference


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


def token_jsd(top: Mapping[str, float], live: Mapping[str, int]) -> float:
    """JSD of the live token counts against the reference top-token shares.

    Both sides are projected onto the reference's top tokens plus one "other" bucket: the
    reference's share outside its top list, and the live tokens not in it.
    """
    tokens = list(top)
    ref = [top[t] for t in tokens] + [max(0.0, 1.0 - sum(top.values()))]
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
    top_tokens: Mapping[str, float]
    vocab_size: int
    output_length: Mapping[str, Sequence[float]] | None = None

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> Reference:
        """Check the shape curation wrote; a `ValueError` says which part is wrong."""
        try:
            tokens = raw["tokens"]
            reference = cls(
                prompt_length=_histogram(raw["prompt_length"], "prompt_length"),
                top_tokens={str(t): float(s) for t, s in tokens["top"].items()},
                vocab_size=int(tokens["vocab_size"]),
                output_length=(
                    _histogram(raw["output_length"], "output_length")
                    if raw.get("output_length")
                    else None
                ),
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"drift reference is missing or malformed: {exc!r}") from exc
        if sum(reference.top_tokens.values()) > 1.0 + 1e-6:
            raise ValueError("drift reference tokens.top shares add up to more than 1")
        return reference


def _histogram(raw: Mapping[str, Any], name: str) -> Mapping[str, Sequence[float]]:
    edges = [float(e) for e in raw["edges"]]
    counts = [float(c) for c in raw["counts"]]
    if len(counts) != len(edges) + 1 or sum(counts) <= 0 or edges != sorted(edges):
        raise ValueError(
            f"drift reference {name} needs ascending edges and len(edges) + 1 non-empty counts"
        )
    if any(math.isnan(x) for x in edges):
        raise ValueError(f"drift reference {name} has NaN edges")
    return {"edges": edges, "counts": counts}
