"""Stage 2, quality: keep only complete, successful, non-refusing answers that fit the student.

A student learns whatever it is shown, including an error page, a cut-off sentence or a
refusal; each such row is dropped here with its reason.
"""

from __future__ import annotations

import re
from collections import Counter

from curation.pairs import Pair, answer_text, content_text
from curation.report import StageReport
from curation.settings import CurationSettings

# Without usage counts, ~4 characters per token is the usual estimate for English text.
CHARS_PER_TOKEN = 4


def keep_good_answers(
    pairs: list[Pair], settings: CurationSettings
) -> tuple[list[Pair], StageReport]:
    """Drop errors, empty, cut-off, filtered and refusing answers, and pairs too long."""
    refusal = re.compile("|".join(f"(?:{p})" for p in settings.refusal_patterns), re.IGNORECASE)
    dropped: Counter[str] = Counter()
    kept: list[Pair] = []
    for pair in pairs:
        reason = drop_reason(pair, settings, refusal)
        if reason is None:
            kept.append(pair)
        else:
            dropped[reason] += 1
    return kept, StageReport.of("quality", len(pairs), len(kept), dropped, Counter())


def drop_reason(pair: Pair, settings: CurationSettings, refusal: re.Pattern[str]) -> str | None:
    """Why this pair is not a usable label, or None when it is."""
    if pair.outcome != "ok" or pair.status >= 400 or pair.answer is None:
        return "error"
    if pair.truncated:
        return "truncated"
    if pair.finish_reason == "length":
        return "length"
    if pair.finish_reason == "content_filter":
        return "content_filter"
    if pair.answer.get("refusal"):
        return "refusal"  # OpenAI's structured refusal field
    text = answer_text(pair.answer)
    if not text.strip():
        return "empty"
    head = content_text(pair.answer.get("content"))[: settings.refusal_scan_chars]
    if settings.refusal_patterns and refusal.search(head):
        return "refusal"
    if pair_tokens(pair, text) > settings.max_context_tokens:
        return "too_long"
    return None


def pair_tokens(pair: Pair, text: str) -> int:
    """Prompt plus answer tokens: the logged usage when present, else a character estimate."""
    if pair.prompt_tokens is not None and pair.completion_tokens is not None:
        return pair.prompt_tokens + pair.completion_tokens
    chars = sum(len(content_text(m.get("content"))) for m in pair.messages) + len(text)
    return chars // CHARS_PER_TOKEN + 1
