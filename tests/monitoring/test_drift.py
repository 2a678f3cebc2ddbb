"""Drift scores against distributions whose PSI and JSD are worked out by hand."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from curation.reference import Histogram as CurationHistogram
from curation.reference import Reference as CurationReference
from monitoring.drift import (
    PSI_EPSILON,
    Reference,
    bin_counts,
    build_reference,
    disagreement_rate,
    jensen_shannon,
    length_psi,
    prompt_text,
    prompt_tokens,
    psi,
    quantile_edges,
    token_jsd,
    unseen_rate,
)


def test_prompt_tokens_are_curations_words_v1() -> None:
    assert prompt_tokens("GPU x2, fast! Café") == ["gpu", "x2", "fast", "café"]
    assert prompt_tokens("   ") == []


def test_prompt_text_leaves_out_system_messages() -> None:
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
        {"role": "user", "content": "Bye"},
    ]
    assert prompt_text(messages) == "Hi\nBye"


def test_psi_of_two_bins_matches_hand_computation() -> None:
    # shares 0.5/0.5 -> 0.8/0.2: (0.3 * ln 1.6) + (-0.3 * ln 0.4)
    expected = 0.3 * math.log(1.6) + (-0.3) * math.log(0.4)
    assert psi([50, 50], [80, 20]) == pytest.approx(expected)
    assert expected == pytest.approx(0.4158883, abs=1e-7)


def test_psi_is_zero_for_identical_shares_and_finite_for_empty_bins() -> None:
    assert psi([1, 2, 3], [10, 20, 30]) == pytest.approx(0.0)
    # the empty bin is floored at epsilon: 0.5 ln 2 + (eps - 0.5) ln(eps / 0.5)
    expected = 0.5 * math.log(2) + (PSI_EPSILON - 0.5) * math.log(PSI_EPSILON / 0.5)
    assert psi([5, 5], [10, 0]) == pytest.approx(expected)


def test_psi_refuses_mismatched_bins() -> None:
    with pytest.raises(ValueError, match="same bins"):
        psi([1, 2], [1, 2, 3])


def test_bins_are_closed_on_the_left_and_open_ended() -> None:
    # bins [0, 10), [10, 20), [20, 30]; 5 below and 99 above land in the end bins
    assert bin_counts([-5, 5, 10, 15, 20, 25, 99], [0, 10, 20, 30]) == [2, 2, 3]


def test_quantile_edges_split_evenly_and_collapse_ties() -> None:
    assert quantile_edges(list(range(1, 101)), bins=4) == pytest.approx(
        [1, 25.75, 50.5, 75.25, 100]
    )
    assert quantile_edges([3] * 50, bins=4) == [3.0, 3.0]
    assert quantile_edges([], bins=4) == [0.0, 0.0]


def test_length_psi_uses_the_reference_bins() -> None:
    reference: dict[str, list[float]] = {"edges": [0, 10, 20, 30], "counts": [25, 50, 25]}
    # live shares 0.25/0.5/0.25 equal the reference: no drift
    assert length_psi(reference, [1, 12, 15, 30]) == pytest.approx(0.0)
    # every live prompt is long: bin shares (eps, eps, 1) against (0.25, 0.5, 0.25)
    e, a = [0.25, 0.5, 0.25], [PSI_EPSILON, PSI_EPSILON, 1.0]
    expected = sum((ai - ei) * math.log(ai / ei) for ai, ei in zip(a, e, strict=True))
    assert length_psi(reference, [40, 50]) == pytest.approx(expected)
    assert expected > 0.25


def test_jensen_shannon_matches_hand_computation() -> None:
    # p = (1/2, 1/2), q = (1, 0), m = (3/4, 1/4)
    # KL(p||m) = 1/2 log2(2/3) + 1/2 log2(2); KL(q||m) = log2(4/3)
    expected = 0.5 * (0.5 * math.log2(2 / 3) + 0.5 + math.log2(4 / 3))
    assert jensen_shannon([0.5, 0.5], [1.0, 0.0]) == pytest.approx(expected)
    assert expected == pytest.approx(0.3112781, abs=1e-7)


def test_jensen_shannon_bounds() -> None:
    assert jensen_shannon([1, 0], [0, 1]) == pytest.approx(1.0)
    assert jensen_shannon([3, 1], [30, 10]) == pytest.approx(0.0)


def test_token_jsd_buckets_tokens_outside_the_top_list() -> None:
    top = {"a": 0.5, "b": 0.25}  # the remaining 0.25 of the reference is "other"
    assert token_jsd(top, 0.25, {"a": 2, "b": 1, "zzz": 1}) == pytest.approx(0.0)
    # live is all "a": q = (1, 0, 0) against p = (1/2, 1/4, 1/4), m = (3/4, 1/8, 1/8)
    # KL(p||m) = 1/2 log2(2/3) + 2 * 1/4 log2(2); KL(q||m) = log2(4/3)
    expected = 0.5 * (0.5 * math.log2(2 / 3) + 0.5 + math.log2(4 / 3))
    assert token_jsd(top, 0.25, {"a": 7}) == pytest.approx(expected)


def test_unseen_rate_counts_live_tokens_missing_from_the_reference() -> None:
    assert unseen_rate({"a": 1.0}, {"a": 3, "b": 1}) == pytest.approx(0.25)
    assert unseen_rate({"a": 1.0}, {}) == 0.0


def test_disagreement_ignores_errors() -> None:
    assert disagreement_rate(["agree", "disagree", "error", "agree", "agree"]) == 0.25
    assert disagreement_rate(["error"]) is None


def test_build_reference_round_trips_through_parse() -> None:
    prompts = ["one two three", "two three", "three"] * 10
    reference = Reference.parse(build_reference(prompts, answers=["ok fine"] * 5))
    assert reference.top_tokens == pytest.approx({"three": 0.5, "two": 1 / 3, "one": 1 / 6})
    assert reference.other_share == 0
    assert sum(reference.prompt_length["counts"]) == 30
    assert reference.answer_length is not None
    assert length_psi(reference.prompt_length, [len(prompt_tokens(p)) for p in prompts]) == 0


def test_reads_what_curation_writes() -> None:
    lengths = [3, 5, 8, 8, 13, 21, 34, 55]
    histogram = CurationHistogram.of(lengths, bins=4)
    written = CurationReference(
        rows=8,
        prompt_length=histogram,
        answer_length=CurationHistogram.of([], bins=4),
        top_tokens={"refund": 0.4, "order": 0.35},
        other_share=0.25,
        total_tokens=100,
        vocabulary=9,
        cluster_shares={"c0": 1.0},
    ).to_json()
    reference = Reference.parse(json.loads(json.dumps(written)))
    assert reference.top_tokens == {"refund": 0.4, "order": 0.35}
    assert reference.other_share == 0.25
    assert reference.answer_length is None  # an empty sample cannot be compared against
    live = [1, 4, 9, 30, 99, 8]
    assert bin_counts(live, reference.prompt_length["edges"]) == histogram.bin_counts(live)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"prompt_length": None}, "missing or malformed"),
        ({"prompt_length": {"edges": [1, 2], "counts": [1, 1]}}, "one more than its counts"),
        ({"tokens": {"top": [["a", 0.9]], "other_share": 0.5}}, "more than 1"),
        ({"tokenizer": "bpe"}, "tokenizer 'bpe'"),
        ({"format": 2}, "format 2"),
    ],
)
def test_parse_rejects_malformed_references(change: dict[str, object], message: str) -> None:
    raw = build_reference(["a b", "c"]) | change
    with pytest.raises(ValueError, match=message):
        Reference.parse(raw)
