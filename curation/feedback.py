"""Stage 3, feedback: users' verdicts on answers, joined by request id.

Only a request's latest feedback counts, since a user may change their mind. A score below
`negative_below` drops the row; a correction replaces the teacher's answer (a person's answer
beats the teacher's) and keeps the row even when its score is negative; a positive score
raises the row's training weight.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import duckdb

from curation.pairs import Pair, answer_from_correction
from curation.report import StageReport
from curation.settings import CurationSettings


@dataclass(frozen=True)
class Verdict:
    score: float
    correction: str | None


def load_feedback(con: duckdb.DuckDBPyConnection, route: str) -> dict[str, Verdict]:
    """The latest feedback per request id of a route, from sealed feedback segments."""
    rows = con.execute(
        "SELECT request_id, score, correction FROM feedback WHERE route = ? "
        "QUALIFY row_number() OVER "
        "(PARTITION BY request_id ORDER BY created_at DESC, seq DESC) = 1",
        [route],
    ).fetchall()
    return {str(rid): Verdict(float(score), correction) for rid, score, correction in rows}


def apply_feedback(
    pairs: list[Pair], verdicts: dict[str, Verdict], settings: CurationSettings
) -> tuple[list[Pair], StageReport]:
    """Drop negatively rated pairs, use corrections as answers, weight positive ones."""
    dropped: Counter[str] = Counter()
    changed: Counter[str] = Counter()
    kept: list[Pair] = []
    for pair in pairs:
        verdict = verdicts.get(pair.request_id)
        if verdict is None:
            kept.append(pair)
            continue
        pair.feedback_score = verdict.score
        if verdict.correction:
            pair.answer = answer_from_correction(verdict.correction)
            pair.corrected = True
            pair.completion_tokens = None  # the usage counted the teacher's answer
            changed["corrected"] += 1
        elif verdict.score < settings.negative_below:
            dropped["negative_feedback"] += 1
            continue
        if verdict.score > 0:
            pair.weight *= 1.0 + settings.positive_weight * verdict.score
            changed["weighted"] += 1
        kept.append(pair)
    return kept, StageReport.of("feedback", len(pairs), len(kept), dropped, changed)
