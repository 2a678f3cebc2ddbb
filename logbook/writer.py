"""The logbook: a DuckDB file written by one process, fed from a bounded in-memory queue.

Capture never slows or fails a request: the handler appends a finished row to a queue and
returns. Every `flush_interval_ms` the writer inserts what is queued as one Arrow batch per
table. A batch that cannot be written goes to a spill file, replayed at the next start. Every
DuckDB call runs on one dedicated thread, so the event loop never waits on the database and
statements never interleave. The writer only stores rows: building them, and the metrics and
drift they feed, happen where the request is answered.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import duckdb

from logbook.migrations import migrate
from logbook.schema import TABLE_COLUMNS, FeedbackRow, RequestRow, Row, arrow_batch, table_of
from logbook.sealing import SealedSegment, reconcile_segments, seal_table
from logbook.settings import LogbookSettings
from logbook.spill import replay_file, spill_files, write_spill
from monitoring.metrics import Metrics

log = logging.getLogger("apprentice.logbook")
T = TypeVar("T")


class LogbookLocked(Exception):
    """Another process holds the logbook file."""


class Logbook:
    """Owns `data_dir/apprentice.duckdb`: writes batches, spills on failure, seals segments."""

    def __init__(self, data_dir: Path, settings: LogbookSettings, metrics: Metrics) -> None:
        self.data_dir = data_dir
        self.path = data_dir / "apprentice.duckdb"
        self.spill_dir = data_dir / "spill"
        self.settings = settings
        self.metrics = metrics
        self._queue: collections.deque[Row] = collections.deque()
        self._pending: dict[str, str] = {}  # request ids queued but not yet committed
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="logbook")
        self._con: duckdb.DuckDBPyConnection | None = None
        self._write_lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self.is_open = False

    # -- lifecycle -------------------------------------------------------------------------

    async def open(self, background: bool = True) -> None:
        """Open the file, migrate, replay spills, finish any interrupted seal, start timers."""
        await asyncio.get_running_loop().run_in_executor(self._executor, self._open_sync)
        self.is_open = True
        if background:
            flush_s, seal_s = self.settings.flush_interval_ms / 1000, self.settings.seal_interval_s
            self._tasks = [
                asyncio.create_task(self._every(flush_s, self.flush)),
                asyncio.create_task(self._every(seal_s, self._seal_quietly)),
            ]

    def _open_sync(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._con = duckdb.connect(str(self.path))
        except duckdb.IOException as exc:
            if "lock" in str(exc).lower():
                raise LogbookLocked(
                    f"The logbook {self.path} is open in another process; stop the other "
                    "`apprentice serve` first (other commands read sealed segments instead)."
                ) from exc
            raise
        migrate(self._con)
        reconcile_segments(self._con, self.data_dir)
        for table, path in spill_files(self.spill_dir):
            replayed, rejected = replay_file(table, path, self._insert_table)
            self.metrics.capture_replayed.inc(replayed)
            log.info("spill: replayed %d %s rows from %s (%d kept back)",
                     replayed, table, path.name, rejected)  # fmt: skip

    async def close(self) -> None:
        """Write everything queued, seal it, and close the file. Nothing queued is lost."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if self._con is None:
            self._executor.shutdown()
            return
        await self.flush()
        await self.seal()
        await self.run(lambda con: con.close())
        self._con = None
        self.is_open = False
        self._executor.shutdown()

    async def _every(self, seconds: float, job: Callable[[], Any]) -> None:
        while True:
            await asyncio.sleep(seconds)
            await job()

    # -- capture ---------------------------------------------------------------------------

    def submit(self, row: RequestRow) -> None:
        """Queue a finished request's row; never blocks. Overflow goes straight to a spill."""
        if len(self._queue) >= self.settings.queue_size:
            self._executor.submit(self._spill, [row])
            return
        self._pending[row.request_id] = row.route
        self._queue.append(row)

    def expect(self, request_id: str, route: str) -> None:
        """Know a request id from its start: a client may post feedback the moment its stream
        ends, before the handler has finished and queued the row."""
        self._pending[request_id] = route

    def forget(self, request_id: str) -> None:
        """A request `expect`ed but not captured after all (its client asked for no capture)."""
        self._pending.pop(request_id, None)

    def submit_feedback(self, row: FeedbackRow) -> None:
        """Queue a feedback row (already validated)."""
        self._queue.append(row)

    @property
    def queue_depth(self) -> int:
        return len(self._queue)

    async def flush(self) -> None:
        """Commit everything queued so far."""
        async with self._write_lock:
            rows = []
            while self._queue:
                rows.append(self._queue.popleft())
            self.metrics.capture_queue_depth.set(len(self._queue))
            if rows:
                await asyncio.get_running_loop().run_in_executor(self._executor, self._write, rows)

    def _write(self, rows: list[Row]) -> None:
        try:
            self._insert(_by_table(rows))
        except Exception:
            log.exception("capture: batch write failed; %d rows spilled", len(rows))
            self.metrics.capture_failures.inc()
            self._spill(rows)
        finally:
            for row in rows:
                if isinstance(row, RequestRow):
                    self._pending.pop(row.request_id, None)

    def _insert_table(self, table: str, rows: list[Row]) -> None:
        self._insert({table: rows})

    def _insert(self, batches: dict[str, list[Row]]) -> None:
        con = self._db()
        con.execute("BEGIN TRANSACTION")
        try:
            for table, rows in batches.items():
                if not rows:
                    continue
                con.register("_batch", arrow_batch(table, rows))
                cols = ", ".join(c.name for c in TABLE_COLUMNS[table])
                con.execute(
                    f"INSERT INTO {table} (seq, {cols}) "
                    f"SELECT nextval('{table}_seq'), {cols} FROM _batch"
                )
                if table == "requests":
                    con.execute("INSERT INTO request_ids SELECT request_id, route FROM _batch")
                con.unregister("_batch")
            con.execute("COMMIT")
        except Exception:
            con.execute("ROLLBACK")
            raise
        for table, rows in batches.items():
            if rows:
                self.metrics.capture_rows.labels(table).inc(len(rows))

    def _spill(self, rows: list[Row]) -> None:
        for table, batch in _by_table(rows).items():
            if batch:
                write_spill(self.spill_dir, table, batch)
                self.metrics.capture_spilled.inc(len(batch))

    # -- sealing and reads -------------------------------------------------------------------

    async def seal(self) -> list[SealedSegment]:
        """Move committed rows into Parquet segments (idempotent; see `sealing`)."""
        async with self._write_lock:
            return await self.run(self._seal_sync)

    def _seal_sync(self, con: duckdb.DuckDBPyConnection) -> list[SealedSegment]:
        sealed: list[SealedSegment] = []
        for table in TABLE_COLUMNS:
            for segment in seal_table(con, self.data_dir, table):
                sealed.append(segment)
                self.metrics.segments_sealed.labels(table).inc()
                self.metrics.rows_sealed.labels(table).inc(segment.rows)
        self.metrics.last_seal.set_to_current_time()
        return sealed

    async def _seal_quietly(self) -> None:
        try:
            await self.seal()
        except Exception:  # the timer must keep running; the next tick retries
            log.exception("seal failed; will retry on the next tick")

    async def route_of(self, request_id: str) -> str | None:
        """The route a logged (or queued) request belongs to, or None if unknown."""
        if request_id in self._pending:
            return self._pending[request_id]

        def lookup(con: duckdb.DuckDBPyConnection) -> str | None:
            row = con.execute(
                "SELECT route FROM request_ids WHERE request_id = ? LIMIT 1", [request_id]
            ).fetchone()
            return None if row is None else str(row[0])

        return await self.run(lookup)

    async def run(self, fn: Callable[[duckdb.DuckDBPyConnection], T]) -> T:
        """Run `fn(connection)` on the logbook thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: fn(self._db()))

    def _db(self) -> duckdb.DuckDBPyConnection:
        if self._con is None:
            raise RuntimeError("the logbook is not open")
        return self._con


def _by_table(rows: list[Row]) -> dict[str, list[Row]]:
    batches: dict[str, list[Row]] = {table: [] for table in TABLE_COLUMNS}
    for row in rows:
        batches[table_of(row)].append(row)
    return batches
