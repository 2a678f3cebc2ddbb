"""The row-local stages on one batch of logged rows: select, quality, feedback and scrub.

Each of these decides a row on the row alone (feedback: on its verdict, looked up in maps
made over the whole log first), so running them batch by batch gives what running them on the
whole log gives; their reports are summed in a `Tally`. What the later, cross-row stages need
of a surviving pair is turned into a few columns (`work_columns`): keys, weights, the prompt
text's first words, its MinHash signature with its LSH band keys and its word buckets, and
nothing else of the pair is kept.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from curation.balance import term_buckets
from curation.dedupe import exact_key, stable_id
from curation.feedback import Verdict, apply_feedback
from curation.minhash import band_keys, lsh_params, word_signatures
from curation.pairs import MalformedRow, Pair, prompt_text
from curation.quality import keep_good_answers
from curation.report import StageReport
from curation.scan import Partition
from curation.scrub import scrub_pairs
from curation.select import to_pair, unreadable_reason
from curation.settings import CurationSettings
from curation.words import split_words

EXAMPLE_CHARS = 80
SKIPPED_HELD = 1000  # unreadable rows listed by id; past this only counted
_BAND_MIX = np.uint64(0x9E3779B97F4A7C15)  # tells the bands' keys apart in one SQL column


@dataclass
class Tally:
    """Stage reports summed over batches, in stage order."""

    stages: dict[str, StageReport] = field(default_factory=dict)

    def add(self, report: StageReport) -> None:
        held = self.stages.get(report.name)
        if held is None:
            self.stages[report.name] = StageReport(report.name, 0, 0, {}, {})
            held = self.stages[report.name]
        held.rows_in += report.rows_in
        held.rows_out += report.rows_out
        held.dropped = dict(sorted((Counter(held.dropped) + Counter(report.dropped)).items()))
        held.changed = dict(sorted((Counter(held.changed) + Counter(report.changed)).items()))

    def report(self, name: str) -> StageReport:
        return self.stages.get(name) or StageReport(name, 0, 0, {}, {})


@dataclass
class RowContext:
    """What the row-local stages need to know of the whole log."""

    settings: CurationSettings
    partitions: dict[str | None, Partition]
    verdicts: dict[str, Verdict]
    by_pair: dict[str, Verdict] = field(default_factory=dict)
    tally: Tally = field(default_factory=Tally)
    skipped: list[dict[str, str]] = field(default_factory=list)
    skipped_total: int = 0


def selected(batch: pa.RecordBatch, ctx: RowContext) -> list[Pair]:
    """The select stage on a batch: readable teacher pairs of their task's newest partition."""
    dropped: Counter[str] = Counter()
    pairs: list[Pair] = []
    for row in batch.to_pylist():
        reason = unreadable_reason(row)
        if reason is None:
            try:
                pair = to_pair(row)
            except MalformedRow:
                reason = "malformed_row"
            else:
                if _current(pair, ctx):
                    pairs.append(pair)
                else:
                    dropped["older_teacher_or_prompt"] += 1
                continue
        dropped[reason] += 1
        if reason not in ("not_teacher", "not_a_pair"):
            ctx.skipped_total += 1
            if len(ctx.skipped) < SKIPPED_HELD:
                ctx.skipped.append({"request_id": str(row["request_id"]), "reason": reason})
    # rows_in is counted once for the whole log (rows read), not per batch
    ctx.tally.add(StageReport.of("select", 0, len(pairs), dropped, Counter()))
    return pairs


def _current(pair: Pair, ctx: RowContext) -> bool:
    if not ctx.settings.one_teacher_per_task:
        return True
    return ctx.partitions.get(pair.task) == (pair.teacher, pair.prompt_fingerprint)


def curated(batch: pa.RecordBatch, ctx: RowContext, *, feedback: bool = True) -> list[Pair]:
    """The batch through select, quality, feedback and scrub (feedback=False: select and
    quality only, what the verdict-per-pair map is made from)."""
    settings = ctx.settings
    pairs, report = keep_good_answers(selected(batch, ctx), settings)
    ctx.tally.add(report)
    if not feedback:
        return pairs
    pairs, report = apply_feedback(pairs, ctx.verdicts, settings, ctx.by_pair)
    ctx.tally.add(report)
    pairs, report = scrub_pairs(pairs, settings)
    ctx.tally.add(report)
    return pairs


WORK_SCHEMA = pa.schema(
    [
        pa.field("pos", pa.int64()),  # the row's number in this run: the dedupe graph's node
        pa.field("request_id", pa.string()),
        pa.field("seq", pa.int64()),
        pa.field("started_at", pa.timestamp("us")),
        pa.field("task", pa.string()),
        pa.field("exact_key", pa.string()),
        pa.field("weight", pa.float64()),
        pa.field("score", pa.float64()),
        pa.field("corrected", pa.bool_()),
        pa.field("digest", pa.string()),  # the balance stage's stable sampling order
        pa.field("example", pa.string()),  # the prompt as a cluster's example shows it
        pa.field("sig", pa.binary()),
        pa.field("bands", pa.list_(pa.uint64())),
        pa.field("terms", pa.list_(pa.uint16())),  # the prompt's word buckets (balance)
    ]
)


def work_columns(
    pairs: list[Pair], seqs: dict[str, int], first_pos: int, settings: CurationSettings
) -> pa.Table:
    """What dedupe and balance need of each pair, as a table of `WORK_SCHEMA`."""
    texts = [prompt_text(p.messages) for p in pairs]
    words = split_words(texts)  # once, for the signature and the balance stage's buckets
    sig = word_signatures(words, settings.shingle_size, settings.num_perm, settings.seed)
    buckets, lengths = term_buckets(words)
    salt = np.array([stable_id(f"{p.task}\x00{p.prompt_fingerprint}") for p in pairs], np.uint64)
    bands, rows = lsh_params(settings.dedupe_threshold, settings.num_perm)
    keys = band_keys(sig, bands, rows, salt) ^ (np.arange(bands, dtype=np.uint64) * _BAND_MIX)
    columns: dict[str, Any] = {
        "pos": range(first_pos, first_pos + len(pairs)),
        "request_id": [p.request_id for p in pairs],
        "seq": [seqs[p.request_id] for p in pairs],
        "started_at": [p.started_at for p in pairs],
        "task": [p.task for p in pairs],
        "exact_key": [exact_key(p) for p in pairs],
        "weight": [p.weight for p in pairs],
        "score": [p.feedback_score for p in pairs],
        "corrected": [p.corrected for p in pairs],
        "digest": [_digest(p.request_id) for p in pairs],
        "example": [_example(t) for t in texts],
        "sig": [row.tobytes() for row in sig],
        "bands": pa.ListArray.from_arrays(
            np.arange(0, (len(pairs) + 1) * bands, bands, dtype=np.int32),
            pa.array(keys.ravel(), pa.uint64()),
        ),
        "terms": pa.ListArray.from_arrays(
            np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32),
            pa.array(buckets, pa.uint16()),
        ),
    }
    return pa.table({k: columns[k] for k in WORK_SCHEMA.names}, schema=WORK_SCHEMA)


def _example(text: str) -> str:
    """The prompt's first 80 characters, whitespace folded: all balance shows of a prompt (it
    clusters the word buckets), so a work row holds 80 characters, not the prompt."""
    return " ".join(text.split())[:EXAMPLE_CHARS]


def _digest(request_id: str) -> str:
    return hashlib.blake2b(request_id.encode(), digest_size=8).hexdigest()
