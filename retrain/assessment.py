"""What the eval says about a trained student: both slices gated, the cascade calibrated.

`assess` turns an `EvalReport` (answers scored against the teacher, with their slice and
confidence signals) into the gate's verdict on each slice and the calibrated cascade rule,
and `eval_json` into the student's ``eval.json``::

    {"metrics": {...}, "gate": {...}, "worst": [...],
     "slices": {"in_distribution": {exact_match, token_f1, ..., "worst": [...]},
                "novel": {... , "held_out": [...]} or {"n": 0, "note": "too few rare spans ..."}},
     "cascade": {"signal", "threshold", "coverage", "agreement", "curve", ...}}
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from retrain.cascade import Answer, Calibration, calibrate, cascade_json
from retrain.evaluation import IN_DISTRIBUTION, NOVEL, EvalReport
from retrain.gate import Verdict, check_gate
from retrain.settings import RetrainSettings

NO_NOVEL_SLICE = "the dataset has no novel slice (curated before novel slices existed)"


@dataclass
class Assessment:
    verdict: Verdict
    calibration: Calibration
    answers: list[Answer]


def cascade_answers(report: EvalReport) -> list[Answer]:
    return [Answer(s.prompt, s.slice, s.exact, s.signals) for s in report.items]


def assess(
    report: EvalReport, settings: RetrainSettings, current: dict[str, Any] | None
) -> Assessment:
    """Gate each slice (`gate` on in_distribution, `gate_novel` on novel), beat the current
    student on the whole eval split, and calibrate the cascade on both slices."""
    in_dist = report.slices.get(IN_DISTRIBUTION, report)
    verdict = check_gate(in_dist.metrics, settings.gate, None)
    reasons = list(verdict.reasons)
    novel = report.slices.get(NOVEL)
    if novel is not None:
        novel_gate = settings.gate_novel if settings.gate_novel is not None else settings.gate
        reasons += [f"novel slice: {r}" for r in check_gate(novel.metrics, novel_gate).reasons]
    if current is not None:
        reasons += check_gate(report.metrics, {}, current, settings.beat_margin).reasons
    answers = cascade_answers(report)
    calibration = calibrate(answers, settings.target_agreement, settings.cascade_folds)
    return Assessment(Verdict(not reasons, reasons), calibration, answers)


def slices_json(report: EvalReport, novel_info: dict[str, Any] | None) -> dict[str, Any]:
    """Each slice's metrics and worst cases; for a missing novel slice, why it is missing."""
    out: dict[str, Any] = {}
    for name in (IN_DISTRIBUTION, NOVEL):
        sub = report.slices.get(name)
        if sub is not None:
            out[name] = {**sub.metrics, "worst": sub.worst(20)}
    info = novel_info or {}
    if NOVEL in out:
        out[NOVEL]["held_out"] = info.get("held_out", [])
    else:
        out[NOVEL] = {"n": 0, "note": info.get("note") or NO_NOVEL_SLICE}
    return out


def eval_json(
    metrics: dict[str, Any],
    gate: dict[str, Any],
    report: EvalReport,
    assessment: Assessment,
    settings: RetrainSettings,
    novel_info: dict[str, Any] | None,
) -> dict[str, Any]:
    return {
        "metrics": metrics,
        "gate": gate,
        "worst": report.worst(20),
        "slices": slices_json(report, novel_info),
        "cascade": cascade_json(
            assessment.calibration, assessment.answers, settings.target_agreement
        ),
    }


def evaluation_items(assessment: Assessment) -> list[dict[str, Any]]:
    """Every eval answer's slice, verdict and confidence signals (eval_items.jsonl)."""
    return [
        {
            "prompt": a.key,
            "slice": a.slice,
            "exact_match": a.correct,
            "signals": {k: (None if math.isinf(v) else v) for k, v in a.signals.items()},
        }
        for a in assessment.answers
    ]
