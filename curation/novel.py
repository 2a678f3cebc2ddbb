"""Stage 7a, novel: hold out whole groups of rare spans, so eval can see names train never had.

The split by session and prompt family (`curation.split`) puts the same product names in train
and eval, so an eval said 100% while a student was right on 38% of texts naming new products
(shared/FINDINGS.md). Here each prompt's rare spans are found (`curation.spans`), and whole
groups of them (every row naming "kettle", every row naming "Ana") are held out: their rows go
to eval as the `novel` slice, and no train row names them. The rest of eval is the
`in_distribution` slice.

Groups are picked in a fixed hash order (the same groups again next version, as far as sizes
allow), groups held out by an earlier version first, until the slice holds `novel_share` of the
rows, never more than `novel_max_share` (an earlier group that grew past it is let go; its
earlier eval rows stay in eval by the split's own rule). A group must recur (two rows or more):
a value seen once is unseen in train wherever it lands, so holding it out shows nothing. When
the route has too few recurring rare spans for `novel_min_rows` rows, there is no novel slice
and the manifest says why.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from curation.pairs import Pair, answer_text, prompt_text
from curation.report import StageReport
from curation.settings import CurationSettings
from curation.spans import Span, find_spans

NOVEL, IN_DISTRIBUTION = "novel", "in_distribution"


@dataclass(frozen=True)
class HeldOut:
    """One group of rows held out of train: the span they share and how many rows name it."""

    key: str
    kind: str
    text: str
    rows: int

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "kind": self.kind, "text": self.text, "rows": self.rows}


@dataclass
class NovelSlice:
    """What the stage decided: each row's spans, the groups held out and the rows they hold."""

    spans: dict[str, list[Span]] = field(default_factory=dict)  # request id -> its spans
    held_out: list[HeldOut] = field(default_factory=list)
    request_ids: set[str] = field(default_factory=set)  # rows of the novel slice
    note: str | None = None  # why there is no novel slice, when there is none

    def to_json(self, detectors: list[str]) -> dict[str, Any]:
        with_spans = sum(bool(s) for s in self.spans.values())
        return {
            "detectors": detectors,
            "rows_with_spans": with_spans,
            "rows": len(self.request_ids),
            "held_out": [h.to_json() for h in self.held_out],
            "note": self.note,
        }


def hold_out_novel(
    pairs: list[Pair], settings: CurationSettings, prior_keys: frozenset[str] = frozenset()
) -> tuple[NovelSlice, StageReport]:
    """Find every pair's rare spans and pick the groups whose rows become the novel slice."""
    texts = [prompt_text(p.messages) for p in pairs]
    answers = [answer_text(p.answer) for p in pairs]
    found = find_spans(
        texts,
        settings.span_detectors,
        settings.rare_word_share,
        settings.slot_min_fillers,
        answers,
    )
    result = NovelSlice(spans={p.request_id: s for p, s in zip(pairs, found, strict=True)})
    if settings.novel_share == 0:
        result.note = "no novel slice: novel_share is 0"
        return result, _report(len(pairs), result)
    rows_of: dict[str, set[int]] = {}
    first: dict[str, Span] = {}
    for i, row_spans in enumerate(found):
        for span in row_spans:
            rows_of.setdefault(span.key, set()).add(i)
            first.setdefault(span.key, span)
    n = len(pairs)
    target = math.ceil(settings.novel_share * n)
    cap = math.floor(settings.novel_max_share * n)
    recurring = [k for k, rows in rows_of.items() if len(rows) >= 2]
    order = sorted(recurring, key=lambda k: (k not in prior_keys, _hash(k)))
    chosen: list[str] = []
    held: set[int] = set()
    for key in order:
        if len(held) >= target and key not in prior_keys:
            break
        if len(held) + len(rows_of[key] - held) > cap:
            # Too big for the slice (an earlier version's group too: a name that became common
            # would take ever more rows out of train); another may fit.
            continue
        chosen.append(key)
        held |= rows_of[key]
    if len(held) < settings.novel_min_rows:
        result.note = _too_few(len(recurring), len(held), settings.novel_min_rows)
        return result, _report(n, result)
    result.held_out = [HeldOut(k, first[k].kind, first[k].text, len(rows_of[k])) for k in chosen]
    result.request_ids = {pairs[i].request_id for i in held}
    return result, _report(n, result)


def _too_few(groups: int, rows: int, needed: int) -> str:
    return (
        f"too few rare spans for a novel slice: {groups} recurring span groups, {rows} rows "
        f"held out of the {needed} needed (novel_min_rows); eval has the in_distribution "
        "slice only"
    )


def _report(n: int, result: NovelSlice) -> StageReport:
    changed = Counter(
        {
            "rows_with_spans": sum(bool(s) for s in result.spans.values()),
            "novel": len(result.request_ids),
            "held_out_groups": len(result.held_out),
        }
    )
    return StageReport.of("novel", n, n, Counter(), +changed)


def _hash(key: str) -> str:
    return hashlib.blake2b(key.encode(), digest_size=8).hexdigest()
