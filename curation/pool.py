"""The row-local stages on several local processes: parsing and scrubbing are pure Python and
hold the GIL, so one process uses one core however many DuckDB has.

Batches go to `Resources.workers` processes with at most two per worker in flight (so memory
stays bounded however long the log), and come back in the order they were sent: the rows are
numbered, and the skipped ids listed, exactly as one process would.
"""

from __future__ import annotations

import multiprocessing
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import asdict
from typing import Any

import pyarrow as pa

from curation.report import StageReport
from curation.rows import SKIPPED_HELD, RowContext, curated, work_columns

_context: RowContext | None = None  # each worker's copy, set once by `_start`


def _start(ctx: RowContext) -> None:
    global _context  # one per worker process, set before its first batch
    _context = ctx


def _run(batch: pa.RecordBatch) -> tuple[pa.Table | None, list[dict[str, Any]], list[Any], int]:
    assert _context is not None
    local = RowContext(_context.settings, _context.partitions, _context.verdicts, _context.by_pair)
    ids, seqs = batch.column("request_id").to_pylist(), batch.column("seq").to_pylist()
    pairs = curated(batch, local)
    rows = (
        work_columns(pairs, dict(zip(ids, seqs, strict=True)), 0, local.settings) if pairs else None
    )
    reports = [asdict(r) for r in local.tally.stages.values()]
    return rows, reports, local.skipped, local.skipped_total


def curated_in_pool(
    batches: Iterator[pa.RecordBatch], ctx: RowContext, workers: int
) -> Iterator[pa.Table]:
    """Each batch's work rows (numbered from 0: the caller renumbers), in batch order; the
    stage reports and skipped ids are added to `ctx`."""
    spawn = multiprocessing.get_context("spawn")  # no fork of a process holding DuckDB threads
    with ProcessPoolExecutor(
        workers, mp_context=spawn, initializer=_start, initargs=(ctx,)
    ) as pool:
        pending: deque[Future[tuple[pa.Table | None, list[dict[str, Any]], list[Any], int]]] = (
            deque()
        )
        for batch in batches:
            pending.append(pool.submit(_run, batch))
            if len(pending) >= 2 * workers:
                yield from _collect(pending.popleft().result(), ctx)
        while pending:
            yield from _collect(pending.popleft().result(), ctx)


def _collect(
    done: tuple[pa.Table | None, list[dict[str, Any]], list[Any], int], ctx: RowContext
) -> Iterator[pa.Table]:
    rows, reports, skipped, skipped_total = done
    for report in reports:
        ctx.tally.add(StageReport(**report))
    ctx.skipped.extend(skipped[: max(0, SKIPPED_HELD - len(ctx.skipped))])
    ctx.skipped_total += skipped_total
    if rows is not None:
        yield rows
