"""Stage 8, reference statistics: what the training prompts looked like, for drift detection.

Computed on the train split and stored in ``manifest.json`` under ``"reference"``::

    {
      "format": 1,
      "tokenizer": "words-v1",          # `tokenize` (curation.words), re-exported here
      "text": "non-system messages",    # `prompt_text` (curation.pairs), re-exported here
      "rows": 9000,                     # train rows described
      "prompt_length": {"unit": "tokens", "edges": [3, 8, ..., 512], "counts": [900, ...]},
      "answer_length": {"unit": "tokens", "edges": [...], "counts": [...]},
      "tokens": {"total": 123456, "vocabulary": 5321,
                 "top": [["the", 0.041], ["refund", 0.012], ...],   # share of all tokens
                 "other_share": 0.31},                              # tokens outside `top`
      "clusters": {"c0": 0.25, "billing/c1": 0.1, ...}              # share of train rows
    }

Length edges are quantiles of the train lengths (so each bin holds about the same number of
rows, which is what PSI wants). Bin i holds lengths in [edges[i], edges[i+1]); the first bin
also holds anything shorter and the last anything longer: use `Histogram.bin_counts` to bin
live lengths the same way. A live prompt is measured with `tokenize(prompt_text(messages))`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from curation.dataset import read_manifest
from curation.pairs import Pair, answer_text
from curation.pairs import prompt_text as prompt_text
from curation.settings import CurationSettings
from curation.words import TOKENIZER, split_words
from curation.words import tokenize as tokenize

BATCH_ROWS = 10_000


@dataclass(frozen=True)
class Histogram:
    edges: list[float]
    counts: list[int]

    def bin_counts(self, values: list[int] | np.ndarray) -> list[int]:
        """Counts of `values` in this histogram's bins (open-ended first and last bins)."""
        inner = np.asarray(self.edges[1:-1], dtype=np.float64)
        index = np.searchsorted(inner, np.asarray(values, dtype=np.float64), side="right")
        return np.bincount(index, minlength=len(self.counts)).astype(int).tolist()  # type: ignore[no-any-return]

    def shares(self) -> list[float]:
        total = sum(self.counts)
        return [c / total if total else 0.0 for c in self.counts]

    def to_json(self) -> dict[str, Any]:
        return {"unit": "tokens", "edges": self.edges, "counts": self.counts}

    @classmethod
    def of(cls, values: list[int], bins: int) -> Histogram:
        if not values:
            return cls([0.0, 0.0], [0])
        data = np.asarray(values, dtype=np.float64)
        edges = np.unique(np.quantile(data, np.linspace(0.0, 1.0, bins + 1)))
        if len(edges) == 1:
            edges = np.array([edges[0], edges[0]])
        histogram = cls([float(e) for e in edges], [0] * (len(edges) - 1))
        return cls(histogram.edges, histogram.bin_counts(data))


@dataclass(frozen=True)
class Reference:
    rows: int
    prompt_length: Histogram
    answer_length: Histogram
    top_tokens: dict[str, float]  # token -> share of all train tokens
    other_share: float
    total_tokens: int
    vocabulary: int
    cluster_shares: dict[str, float]

    def to_json(self) -> dict[str, Any]:
        return {
            "format": 1,
            "tokenizer": TOKENIZER,
            "text": "non-system messages",
            "rows": self.rows,
            "prompt_length": self.prompt_length.to_json(),
            "answer_length": self.answer_length.to_json(),
            "tokens": {
                "total": self.total_tokens,
                "vocabulary": self.vocabulary,
                "top": [[token, share] for token, share in self.top_tokens.items()],
                "other_share": self.other_share,
            },
            "clusters": self.cluster_shares,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Reference:
        tokens = data["tokens"]
        return cls(
            rows=int(data["rows"]),
            prompt_length=Histogram(
                data["prompt_length"]["edges"], data["prompt_length"]["counts"]
            ),
            answer_length=Histogram(
                data["answer_length"]["edges"], data["answer_length"]["counts"]
            ),
            top_tokens={str(t): float(s) for t, s in tokens["top"]},
            other_share=float(tokens["other_share"]),
            total_tokens=int(tokens["total"]),
            vocabulary=int(tokens["vocabulary"]),
            cluster_shares={str(k): float(v) for k, v in data["clusters"].items()},
        )


def reference_stats(train: list[Pair], settings: CurationSettings) -> Reference:
    """Length histograms, token profile and cluster shares of the newest train rows.

    A student trained after a shift learns from old and new traffic alike (replay); the
    reference describes the newest `reference_rows`, the traffic it is expected to serve.
    """
    train = sorted(train, key=lambda p: p.started_at)[-settings.reference_rows :]
    counts: Counter[str] = Counter()
    prompt_lengths: list[int] = []
    answer_lengths: list[int] = []
    for lo in range(0, len(train), BATCH_ROWS):  # batches bound the word arrays held at once
        batch = train[lo : lo + BATCH_ROWS]
        prompts = split_words([prompt_text(p.messages) for p in batch])
        per_word = np.bincount(prompts.codes, minlength=len(prompts.vocabulary)).tolist()
        counts.update(dict(zip(prompts.vocabulary, per_word, strict=True)))
        prompt_lengths += prompts.lengths.tolist()
        answer_lengths += split_words([answer_text(p.answer) for p in batch]).lengths.tolist()
    total = sum(counts.values())
    common = counts.most_common(settings.top_tokens)
    shares = {word: round(n / total, 8) for word, n in common}
    other = (total - sum(n for _, n in common)) / total if total else 0.0
    clusters = Counter(p.cluster for p in train)
    return Reference(
        rows=len(train),
        prompt_length=Histogram.of(prompt_lengths, settings.length_bins),
        answer_length=Histogram.of(answer_lengths, settings.length_bins),
        top_tokens=shares,
        other_share=round(other, 8),
        total_tokens=total,
        vocabulary=len(counts),
        cluster_shares={c: round(n / len(train), 6) for c, n in sorted(clusters.items())},
    )


def load_reference(data_dir: Path, route: str, version: int) -> Reference:
    """The reference statistics stored with a dataset version (for the drift detector)."""
    return Reference.from_json(read_manifest(data_dir, route, version)["reference"])
