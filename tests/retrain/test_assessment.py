from __future__ import annotations

from typing import Any

from retrain.assessment import assess, slices_json
from retrain.evaluation import score
from retrain.settings import RetrainSettings
from tests.retrain.triage_task import make_rows, novel_rows

SIGNALS = ("mean_logprob", "min_logprob", "value_mean_logprob", "value_min_logprob")


def report(novel_right: int, novel_n: int = 20) -> Any:
    """In-distribution answers all right; `novel_right` of the novel ones, each right answer
    more confident than each wrong one."""
    rows = make_rows(40, seed=1) + [r | {"slice": "novel"} for r in novel_rows(novel_n, seed=2)]
    predictions, signals = [], []
    for i, row in enumerate(rows):
        right = i < 40 or i - 40 < novel_right
        predictions.append(row["answer_text"] if right else '{"intent": "wrong"}')
        signals.append(dict.fromkeys(SIGNALS, -0.01 if right else -0.8))
    return score(rows, predictions, [10.0], signals)


def test_both_slices_are_scored_and_gated() -> None:
    r = report(novel_right=12)
    assert r.slices["in_distribution"].metrics["exact_match"] == 1.0
    assert r.slices["novel"].metrics["exact_match"] == 0.6
    verdict = assess(r, RetrainSettings(), None).verdict  # gate_novel defaults to gate
    assert not verdict.passed
    assert verdict.reasons == ["novel slice: exact_match 0.6 is below the gate's minimum 0.9"]
    lenient = RetrainSettings(gate_novel={"exact_match": 0.5})
    assert assess(r, lenient, None).verdict.passed


def test_the_cascade_defers_the_unsure_novel_answers() -> None:
    assessment = assess(report(novel_right=12), RetrainSettings(), None)
    choice = assessment.calibration.choice
    assert choice.threshold == -0.01 and choice.agreement == 1.0
    assert choice.coverage == 52 / 60


def test_a_missing_novel_slice_says_why() -> None:
    rows = make_rows(10, seed=1)
    r = score(rows, [x["answer_text"] for x in rows], [1.0])
    out = slices_json(r, {"note": "too few rare spans for a novel slice: ..."})
    assert out["novel"] == {"n": 0, "note": "too few rare spans for a novel slice: ..."}
    assert slices_json(r, None)["novel"]["note"].startswith("the dataset has no novel slice")
    assert out["in_distribution"]["n"] == 10.0 and "worst" in out["in_distribution"]
