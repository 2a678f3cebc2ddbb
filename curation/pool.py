"""The row-local stages on several local processes: parsing and scrubbing are pure Python and
hold the GIL, so one process uses one core however many DuckDB has.

Batches go to `Resources.workers` processes with at most two per worker in flight (so memory
stays bounded however long the log). Each worker writes its batch's work rows as a part file
itself (`curation.parts`) and sends back only its stage reports and skipped ids, which are
added in the order the batches were sent: the skipped ids are listed exactly as one process
would list them.
"""

from __future__ import annotations

import multiprocessing
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pyarrow as pa

from curation.parts import curate_part
from curation.report import StageReport
from curation.rows import SKIPPED_HELD, RowContext

_context: RowContext | None = None  # each worker's copy, set once by `_start`
Done = tuple[list[dict[str, Any]], list[Any], int]


def _start(ctx: RowContext) -> None:
    global _context  # one per worker process, set before its first batch
    _context = ctx


def _run(batch: pa.RecordBatch, base: int, folder: Path) -> Done:
    assert _context is not None
    local = RowContext(_context.settings, _context.partitions, _context.verdicts, _context.by_pair)
    curate_part(batch, local, base, folder)
    reports = [asdict(r) for r in local.tally.stages.values()]
    return reports, local.skipped, local.skipped_total


def curated_in_pool(
    batches: Iterator[pa.RecordBatch], ctx: RowContext, workers: int, pos: int, folder: Path
) -> int:
    """Each batch's work rows written as a part into `folder`, numbered from `pos` on; the
    stage reports and skipped ids are added to `ctx`. Returns the next row number."""
    spawn = multiprocessing.get_context("spawn")  # no fork of a process holding DuckDB threads
    with ProcessPoolExecutor(
        workers, mp_context=spawn, initializer=_start, initargs=(ctx,)
    ) as pool:
        pending: deque[Future[Done]] = deque()
        for batch in batches:
            pending.append(pool.submit(_run, batch, pos, folder))
            pos += batch.num_rows
            if len(pending) >= 2 * workers:
                _collect(pending.popleft().result(), ctx)
        while pending:
            _collect(pending.popleft().result(), ctx)
    return pos


def _collect(done: Done, ctx: RowContext) -> None:
    reports, skipped, skipped_total = done
    for report in reports:
        ctx.tally.add(StageReport(**report))
    ctx.skipped.extend(skipped[: max(0, SKIPPED_HELD - len(ctx.skipped))])
    ctx.skipped_total += skipped_total
