"""The logbook: a DuckDB file written by one process, fed from a journal and a bounded queue.

Capture never slows or fails a request: the handler appends a finished row to the journal (one
`write(2)`, see `logbook.journal`) and to an in-memory queue, and returns. Every
`flush_interval_ms` the writer inserts what is queued as one Arrow batch per table. Every DuckDB
call runs on one dedicated thread, so the event loop never waits on the database and statements
never interleave. The writer only stores rows: building them, and the metrics and drift they
feed, happen where the request is answered.

The writer cannot die. A failed write (a full disk, an I/O error) is retried with backoff; its
rows go back to the front of the queue and stay in the journal. A row the database refuses
(a bug: a type it cannot hold) is kept in ``journal/rejected/`` with the reason, and its batch
goes on without it. When the queue is full, new rows wait in the journal only and readiness
turns false (`degraded`) until the writer has caught up; a row that neither the queue nor the
journal can take is counted as dropped and logged, never silently lost. Shutdown always tries a
last flush and seal; what it cannot write is replayed from the journal at the next start.
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
import pyarrow as pa

from logbook.journal import COMMITTED, Journal, JournalFile, read_rows, write_rejected
from logbook.migrations import migrate
from logbook.schema import TABLE_COLUMNS, FeedbackRow, RequestRow, Row, arrow_batch, table_of
from logbook.sealing import SealedSegment, reconcile_segments, seal_table
from logbook.settings import LogbookSettings
from logbook.transaction import transaction
from logbook.uploads import Uploads
from monitoring.metrics import Metrics
from store.store import Store, StoreError

log = logging.getLogger("apprentice.logbook")
T = TypeVar("T")
MAX_BACKOFF_S = 5.0
# Errors that say a row is bad, not that the disk is: found row by row and kept aside.
DATA_ERRORS = (
    pa.ArrowException,
    duckdb.ConstraintException,
    duckdb.ConversionException,
    duckdb.InvalidInputException,
    duckdb.TypeMismatchException,
)
Owner = tuple[str, str | None]  # (route, key id) of a logged request


class LogbookLocked(Exception):
    """Another process holds the logbook file."""


class SealFailed(Exception):
    """Committed rows could not be sealed (a read-only or missing store); they stay in the
    logbook and the next seal tries again. The message is one sentence."""


class PartialWrite(Exception):
    """Rows from `remaining` on were not written; the ones before were."""

    def __init__(self, remaining: list[Row]) -> None:
        super().__init__(f"{len(remaining)} rows not written")
        self.remaining = remaining


class Logbook:
    """Owns `data_dir/apprentice.duckdb`: journals, writes batches, seals segments into the
    shared store (`data_dir` itself when none is given)."""

    def __init__(
        self,
        data_dir: Path,
        settings: LogbookSettings,
        metrics: Metrics,
        store: Store | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.store = store or Store(data_dir)
        self.uploads = Uploads(self.store, metrics)
        self.path = data_dir / "apprentice.duckdb"
        self.settings = settings
        self.metrics = metrics
        self.journal = Journal(data_dir / "journal", fsync=settings.fsync)
        self.identity = ""
        self.degraded: str | None = None  # why capture cannot keep up, or None
        self.seal_failing: str | None = None  # why the last seal failed, or None
        self._queue: collections.deque[Row] = collections.deque()
        self._pending: dict[str, Owner] = {}  # request ids queued but not yet committed
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="logbook")
        self._con: duckdb.DuckDBPyConnection | None = None
        self._write_lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self._failing: str | None = None
        self.is_open = False

    # -- lifecycle -------------------------------------------------------------------------

    async def open(self, background: bool = True) -> None:
        """Open the file, migrate, finish interrupted seals, replay journals, start timers."""
        await asyncio.get_running_loop().run_in_executor(self._executor, self._open_sync)
        self.journal.start()
        self.is_open = True
        if background:
            self._tasks = [
                asyncio.create_task(self._flush_loop()),
                asyncio.create_task(self._every(self.settings.seal_interval_s, self._seal_quietly)),
            ]

    def _open_sync(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        try:
            # One DuckDB thread: the writer's statements are small batches, and DuckDB's own
            # workers only spread each flush over the other cores, where the proxy answers
            # (measured: 5.5 ms of CPU a flush with a thread a core, 3.8 ms with one).
            self._con = duckdb.connect(str(self.path), config={"threads": 1})
        except duckdb.IOException as exc:
            if "lock" in str(exc).lower():
                raise LogbookLocked(
                    f"The logbook {self.path} is open in another process; stop the other "
                    "`apprentice serve` first (other commands read sealed segments instead)."
                ) from exc
            raise
        migrate(self._con)
        row = self._con.execute("SELECT id FROM logbook_identity").fetchone()
        self.identity = str(row[0]) if row else ""
        _, moved = reconcile_segments(
            self._con, self.store.root, self.identity, self.data_dir / "quarantine"
        )
        if moved:
            self.metrics.segments_quarantined.inc(len(moved))
        self.uploads.recover(self.identity)
        self._replay_leftovers()

    def _replay_leftovers(self) -> None:
        """Rows a previous process journaled (or, before journals, spilled) and may not have
        committed: insert the ones the logbook lacks."""
        legacy = sorted((self.data_dir / "spill").glob("*.jsonl"))
        for path in [*legacy, *self.journal.leftover()]:
            rows, unreadable = read_rows(path)
            missing = self._missing(rows)
            self._insert_rows(missing)
            self.metrics.capture_replayed.inc(len(missing))
            if missing and path.name.endswith(COMMITTED):
                # These rows had been committed, and the database does not have them: its
                # write-ahead log was cut short (power loss without fsync, a copied file).
                log.error(
                    "the logbook had lost %d committed rows (its write-ahead log was cut "
                    "short); they were recovered from the journal %s", len(missing), path.name,
                )  # fmt: skip
            elif missing or unreadable:
                log.warning(
                    "recovered %d rows a stopped process had not committed, from %s%s",
                    len(missing), path.name,
                    f"; {unreadable} unreadable lines (a write cut short)" if unreadable else "",
                )  # fmt: skip
            if path.parent == self.journal.folder:
                self.journal.committed.append(path)  # deleted once sealed, like any journal
            else:
                path.unlink()

    async def close(self) -> None:
        """Write everything queued, seal it, and close the file; what cannot be written now
        stays in the journal for the next start."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if self._con is None:
            self._executor.shutdown()
            return
        if not await self.flush():
            log.error("shutdown: %d rows not written; they are in the journal for the next start",
                      len(self._queue))  # fmt: skip
        with contextlib.suppress(Exception):
            await self._seal_quietly()
        self.journal.close()
        try:
            await self.run(lambda con: con.close())
        except Exception:  # a full disk may fail the checkpoint at close; the WAL still holds it
            log.exception("closing the logbook failed; its write-ahead log is replayed at start")
        self._con = None
        self.is_open = False
        self._executor.shutdown()

    async def _flush_loop(self) -> None:
        base = self.settings.flush_interval_ms / 1000
        delay = base
        while True:
            await asyncio.sleep(delay)
            delay = base if await self.flush() else min(max(delay, base) * 2, MAX_BACKOFF_S)

    async def _every(self, seconds: float, job: Callable[[], Any]) -> None:
        while True:
            await asyncio.sleep(seconds)
            await job()

    # -- capture ---------------------------------------------------------------------------

    def submit(self, row: RequestRow) -> None:
        """Journal and queue a finished request's row; never blocks, never raises."""
        queued = len(self._queue) < self.settings.queue_size
        journaled = self.journal.append(row, queued)
        if not journaled:
            self.metrics.capture_journal_failures.inc()
        if queued:
            self._pending[row.request_id] = (row.route, row.key_id)
            self._queue.append(row)
        elif journaled:
            self.metrics.capture_spilled.inc()
        else:
            self.metrics.capture_dropped.inc()
            log.error("capture: row %s dropped: the queue is full and the journal cannot be "
                      "written", row.request_id)  # fmt: skip
        self._update_degraded()

    def submit_feedback(self, row: FeedbackRow) -> None:
        """Journal and queue a feedback row (already validated)."""
        self.journal.append(row, True)
        self._queue.append(row)

    @property
    def queue_depth(self) -> int:
        return len(self._queue)

    def _update_degraded(self) -> None:
        if len(self._queue) >= self.settings.queue_size:
            reason: str | None = "the capture queue is full; new rows wait in the journal"
        else:
            reason = self._failing
        if reason != self.degraded:
            self.degraded = reason
            self.metrics.capture_degraded.set(0.0 if reason is None else 1.0)
            if reason is not None:
                log.error("capture degraded: %s", reason)
            else:
                log.info("capture healthy again")

    async def flush(self) -> bool:
        """Commit everything queued so far; False when the write failed (retried later)."""
        async with self._write_lock:
            waiting = self.journal.rotate()
            rows = list(self._queue)
            self._queue.clear()
            self.metrics.capture_queue_depth.set(0)
            disk_only = [f for f in waiting if f.disk_only]
            if not rows and not disk_only:
                self.journal.mark_committed(waiting)
                return True
            try:
                await asyncio.get_running_loop().run_in_executor(
                    self._executor, self._write, rows, disk_only
                )
            except PartialWrite as exc:
                return self._write_failed(exc.remaining, exc.__cause__ or exc)
            except Exception as exc:
                return self._write_failed(rows, exc)
            self.journal.mark_committed(waiting)
            for row in rows:
                if isinstance(row, RequestRow):
                    self._pending.pop(row.request_id, None)
            self._failing = None
            self._update_degraded()
            return True

    def _write_failed(self, rows: list[Row], exc: BaseException) -> bool:
        # Back to the front of the queue, in order; the journal still holds them.
        self._queue.extendleft(reversed(rows))
        self.metrics.capture_failures.inc()
        self.metrics.capture_queue_depth.set(len(self._queue))
        self._failing = f"logbook writes are failing ({type(exc).__name__}: {exc})"
        self._update_degraded()
        return False

    def _write(self, rows: list[Row], disk_only: list[JournalFile]) -> None:
        """On the logbook thread: the queued rows, and rows that waited in the journal only."""
        if disk_only:
            queued = {_key(r) for r in rows}
            for f in disk_only:
                on_disk = [r for r in read_rows(f.path)[0] if _key(r) not in queued]
                missing = self._missing(on_disk)
                rows = rows + missing
                self.metrics.capture_replayed.inc(len(missing))
        self._insert_rows(rows)

    def _insert_rows(self, rows: list[Row]) -> None:
        """Insert `rows`; rows the database refuses are kept aside and the rest written."""
        if not rows:
            return
        try:
            self._insert(_by_table(rows))
            return
        except DATA_ERRORS:
            pass
        rejected: list[tuple[Row, str]] = []
        for i, row in enumerate(rows):
            try:
                self._insert(_by_table([row]))
            except DATA_ERRORS as exc:
                rejected.append((row, f"{type(exc).__name__}: {exc}"))
            except Exception as exc:
                raise PartialWrite(rows[i:]) from exc
        if rejected:
            reasons = {id(row): why for row, why in rejected}
            path = write_rejected(
                self.journal.folder / "rejected", [r for r, _ in rejected], lambda r: reasons[id(r)]
            )
            self.metrics.capture_rejected.inc(len(rejected))
            log.error("capture: %d rows the logbook cannot hold are kept in %s",
                      len(rejected), path)  # fmt: skip

    def _insert(self, batches: dict[str, list[Row]]) -> None:
        with transaction(self._db()) as con:
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
                    con.execute(
                        "INSERT INTO request_ids SELECT request_id, route, key_id FROM _batch"
                    )
                con.unregister("_batch")
        for table, rows in batches.items():
            if rows:
                self.metrics.capture_rows.labels(table).inc(len(rows))

    def _missing(self, rows: list[Row]) -> list[Row]:
        """The rows the logbook does not hold yet (replays: a row is never written twice)."""
        if not rows:
            return []
        con = self._db()
        requests = [r.request_id for r in rows if isinstance(r, RequestRow)]
        feedback = [r.feedback_id for r in rows if isinstance(r, FeedbackRow)]
        held = {
            row[0]
            for row in con.execute(
                "SELECT request_id FROM request_ids WHERE request_id IN "
                "(SELECT unnest(?::VARCHAR[]))",
                [requests],
            ).fetchall()
        } | {
            row[0]
            for row in con.execute(
                "SELECT feedback_id FROM feedback WHERE feedback_id IN "
                "(SELECT unnest(?::VARCHAR[]))",
                [feedback],
            ).fetchall()
        }
        seen: set[str] = set()
        out = []
        for row in rows:
            key = _key(row)
            if key not in held and key not in seen:
                seen.add(key)
                out.append(row)
        return out

    # -- sealing and reads -------------------------------------------------------------------

    async def seal(self) -> list[SealedSegment]:
        """Move committed rows into Parquet segments (idempotent; see `sealing`), drop the
        journal files whose rows are now sealed, then push what an object store still lacks
        (`uploads`: a failed push is retried at the next seal, never raised)."""
        async with self._write_lock:
            committed = list(self.journal.committed)
            try:
                sealed = await self.run(self._seal_sync)
            except (OSError, StoreError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
                self.seal_failing = (
                    f"sealing into {self.store.describe()} fails ({reason}); committed rows "
                    "stay in the logbook until a seal succeeds"
                )
                raise SealFailed(self.seal_failing) from exc
            self.seal_failing = None
            self.journal.sealed(committed)
            self.uploads.add([s.path for s in sealed])
        await self.uploads.push()
        return sealed

    def _seal_sync(self, con: duckdb.DuckDBPyConnection) -> list[SealedSegment]:
        sealed: list[SealedSegment] = []
        for table in TABLE_COLUMNS:
            for segment in seal_table(con, self.store, table, self.identity):
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

    async def owner_of(self, request_id: str) -> Owner | None:
        """(route, key id) of a logged request, or None when no such request was logged."""
        if request_id in self._pending:
            return self._pending[request_id]

        def lookup(con: duckdb.DuckDBPyConnection) -> Owner | None:
            row = con.execute(
                "SELECT route, key_id FROM request_ids WHERE request_id = ? LIMIT 1",
                [request_id],
            ).fetchone()
            return None if row is None else (str(row[0]), row[1])

        return await self.run(lookup)

    async def run(self, fn: Callable[[duckdb.DuckDBPyConnection], T]) -> T:
        """Run `fn(connection)` on the logbook thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: fn(self._db()))

    def _db(self) -> duckdb.DuckDBPyConnection:
        if self._con is None:
            raise RuntimeError("the logbook is not open")
        return self._con


def _key(row: Row) -> str:
    return row.request_id if isinstance(row, RequestRow) else row.feedback_id


def _by_table(rows: list[Row]) -> dict[str, list[Row]]:
    batches: dict[str, list[Row]] = {table: [] for table in TABLE_COLUMNS}
    for row in rows:
        batches[table_of(row)].append(row)
    return batches
