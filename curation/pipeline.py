"""The stages in their order, from a segments connection to train, eval and reference stats.

Every pair in one Python list: the plainest statement of what curation does, and the reference
the out-of-core plan the job runs (`curation.plan`) is tested against (tests/curation/
test_plan.py). It holds ~8 KB per logged row, so it is not for a real log.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import duckdb

from curation.balance import balance_pairs
from curation.dedupe import dedupe_pairs
from curation.feedback import apply_feedback, load_feedback
from curation.novel import NovelSlice, hold_out_novel
from curation.pairs import Pair
from curation.quality import keep_good_answers
from curation.reference import Reference, reference_stats
from curation.report import ClusterRow, StageReport
from curation.scrub import scrub_pairs
from curation.select import read_rows, select_pairs
from curation.settings import CurationSettings
from curation.split import PriorEval, split_pairs


@dataclass
class StageOutput:
    rows_read: int
    train: list[Pair]
    evaluation: list[Pair]
    reports: list[StageReport]
    clusters: list[ClusterRow]
    reference: Reference
    skipped: list[dict[str, str]] = field(default_factory=list)
    novel: NovelSlice = field(default_factory=NovelSlice)
    skipped_total: int | None = None  # when `skipped` lists only the first ones
    read: dict[str, int] = field(default_factory=dict)  # segments read, rows from a reservoir


def run_stages(
    con: duckdb.DuckDBPyConnection,
    route: str,
    settings: CurationSettings,
    task: str | None,
    since: datetime | None,
    prior: PriorEval,
    advance: Callable[[str], None] = lambda name: None,
) -> StageOutput:
    """Run every stage on the route's rows in `con`; `advance` is told each finished stage."""
    rows_read, table = read_rows(con, route, task, since)
    selection = select_pairs(rows_read, table, settings)
    del table  # the raw JSON text is no longer needed; let it go before the heavy stages
    reports = [selection.report]
    advance("select")
    pairs, report = keep_good_answers(selection.pairs, settings)
    reports.append(report)
    advance("quality")
    pairs, report = apply_feedback(pairs, load_feedback(con, route), settings)
    reports.append(report)
    advance("feedback")
    pairs, report = scrub_pairs(pairs, settings)
    reports.append(report)
    advance("scrub")
    pairs, report = dedupe_pairs(pairs, settings)
    reports.append(report)
    advance("dedupe")
    pairs, report, clusters = balance_pairs(pairs, settings, prior.request_ids)
    reports.append(report)
    advance("balance")
    novel, report = hold_out_novel(pairs, settings, prior.novel_keys)
    reports.append(report)
    advance("novel")
    train, evaluation, report = split_pairs(pairs, settings, prior, novel.request_ids)
    reports.append(report)
    advance("split")
    reference = reference_stats(train, settings)
    advance("reference")
    return StageOutput(
        rows_read, train, evaluation, reports, clusters, reference, selection.skipped, novel
    )
