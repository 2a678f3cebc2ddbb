"""Stage 3, feedback: users' verdicts on answers, joined by request id.

Only a request's latest feedback counts, since a user may change their mind. A score below
`negative_below` drops the row; a correction replaces the teacher's answer (a person's answer
beats the teacher's) and keeps the row even when its score is negative; a positive score
raises the row's training weight.

A verdict holds for the pair, not only for the request it was given on: a logged copy of the
same (prompt, answer) without feedback of its own takes the pair's latest verdict, so a pair
marked bad does not survive through its exact duplicates (dedupe would keep one of them).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass
from datetime import datetime

import duckdb

from curation.dedupe import exact_key
from curation.pairs import Pair, answer_from_correction, answer_text
from curation.report import StageReport
from curation.settings import CurationSettings


@dataclass(frozen=True)
class Verdict:
    score: float
    correction: str | None
    created_at: datetime | None = None  # which verdict on a pair is the latest


def load_feedback(con: duckdb.DuckDBPyConnection, route: str) -> dict[str, Verdict]:
    """The latest feedback per request id of a route, from sealed feedback segments."""
    rows = con.execute(
        "SELECT request_id, score, correction, created_at FROM feedback WHERE route = ? "
        "QUALIFY row_number() OVER "
        "(PARTITION BY request_id ORDER BY created_at DESC, seq DESC) = 1",
        [route],
    ).fetchall()
    return {str(rid): Verdict(float(score), correction, at) for rid, score, correction, at in rows}


def pair_key(pair: Pair) -> str:
    """Identity of a (prompt, answer) pair: the exact prompt key and the answer, whitespace
    collapsed."""
    answer = " ".join(answer_text(pair.answer).split())
    blob = json.dumps([exact_key(pair), answer])
    return hashlib.blake2b(blob.encode(), digest_size=12).hexdigest()


def pair_verdicts(pairs: list[Pair], verdicts: dict[str, Verdict]) -> dict[str, Verdict]:
    """The latest verdict given on any copy of each (prompt, answer) pair."""
    out: dict[str, Verdict] = {}
    for pair in pairs:
        verdict = verdicts.get(pair.request_id)
        if verdict is None:
            continue
        key = pair_key(pair)
        held = out.get(key)
        if held is None or _later(verdict, held):
            out[key] = verdict
    return out


def _later(a: Verdict, b: Verdict) -> bool:
    if a.created_at is None or b.created_at is None:
        return a.score < b.score  # undated: the harsher verdict holds
    return a.created_at > b.created_at


def apply_feedback(
    pairs: list[Pair],
    verdicts: dict[str, Verdict],
    settings: CurationSettings,
    by_pair: dict[str, Verdict] | None = None,
) -> tuple[list[Pair], StageReport]:
    """Drop negatively rated pairs (every copy of them), use corrections as answers, weight
    positive ones.

    by_pair: the verdict per pair key when `pairs` is one batch of a larger log (the streaming
    job computes it over the whole log first); by default, computed over `pairs`."""
    dropped: Counter[str] = Counter()
    changed: Counter[str] = Counter()
    kept: list[Pair] = []
    if by_pair is None:
        by_pair = pair_verdicts(pairs, verdicts) if verdicts else {}
    for pair in pairs:
        verdict = verdicts.get(pair.request_id)
        copy = verdict is None
        if verdict is None:
            verdict = by_pair.get(pair_key(pair)) if by_pair else None
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
            dropped["negative_feedback_copy" if copy else "negative_feedback"] += 1
            continue
        if verdict.score > 0:
            pair.weight *= 1.0 + settings.positive_weight * verdict.score
            changed["weighted"] += 1
        kept.append(pair)
    return kept, StageReport.of("feedback", len(pairs), len(kept), dropped, changed)
