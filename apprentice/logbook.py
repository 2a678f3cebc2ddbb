"""The logbook: a DuckDB file written by one process, fed from a bounded in-memory queue.

Capture never slows or fails a request: the handler appends a raw exchange to a queue and
returns. Every `flush_interval_ms` a writer turns the queued exchanges into rows (parsing
streams, counting tokens: the capture work happens here, off the response path) and inserts
them as one Arrow batch. A batch that cannot be written goes to a spill file, replayed at the
next start. Every DuckDB call runs on one dedicated thread, so the event loop never waits on
the database and statements never interleave.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import logging
import os
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

import duckdb
import orjson
import pyarrow as pa

from apprentice.config import LogbookConfig
from apprentice.schema import TABLE_COLUMNS, arrow_schema, migrate
from apprentice.sealing import SealedSegment, reconcile_segments, seal_table
from monitoring.metrics import Metrics

log = logging.getLogger("apprentice.logbook")
T = TypeVar("T")


class Capturable(Protocol):
    """A finished exchange that can turn itself into a `requests` row (in the writer thread)."""

    request_id: str
    route: str

    capture: bool

    def to_row(self) -> dict[str, Any] | None: ...


class LogbookLocked(Exception):
    """Another process holds the logbook file."""


class Logbook:
    """Owns `data_dir/apprentice.duckdb`: writes batches, spills on failure, seals segments."""

    def __init__(self, data_dir: Path, config: LogbookConfig, metrics: Metrics) -> None:
        self.data_dir = data_dir
        self.path = data_dir / "apprentice.duckdb"
        self.spill_dir = data_dir / "spill"
        self.config = config
        self.metrics = metrics
        self._queue: collections.deque[tuple[str, Any]] = collections.deque()
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
            self._tasks = [
                asyncio.create_task(self._every(self.config.flush_interval_ms / 1000, self.flush)),
                asyncio.create_task(self._every(self.config.seal_interval_s, self._seal_quietly)),
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
        self._replay_spills()

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

    def submit(self, exchange: Capturable) -> None:
        """Queue a finished exchange; never blocks. Overflow goes straight to a spill file."""
        if len(self._queue) >= self.config.queue_size:
            self._executor.submit(self._spill_items, [("requests", exchange)])
            return
        if exchange.capture:
            self._pending[exchange.request_id] = exchange.route
        self._queue.append(("requests", exchange))

    def expect(self, request_id: str, route: str) -> None:
        """Know a request id from its start: a client may post feedback the moment its stream
        ends, before the handler has finished and queued the exchange."""
        self._pending[request_id] = route

    def submit_feedback(self, row: dict[str, Any]) -> None:
        """Queue a feedback row (already validated)."""
        self._queue.append(("feedback", row))

    @property
    def queue_depth(self) -> int:
        return len(self._queue)

    async def flush(self) -> None:
        """Commit everything queued so far."""
        async with self._write_lock:
            items = []
            while self._queue:
                items.append(self._queue.popleft())
            self.metrics.capture_queue_depth.set(len(self._queue))
            if items:
                await asyncio.get_running_loop().run_in_executor(
                    self._executor, self._write_items, items
                )

    def _write_items(self, items: list[tuple[str, Any]]) -> None:
        batches: dict[str, list[dict[str, Any]]] = {"requests": [], "feedback": []}
        for table, item in items:
            try:
                row = item.to_row() if table == "requests" else item
                if row is not None:
                    batches[table].append(row)
            except Exception:  # a row we cannot build must not take the batch with it
                log.exception("capture: could not build a row for %s", _describe(item))
                self.metrics.capture_failures.inc()
        try:
            self._insert(batches)
        except Exception:
            log.exception("capture: batch write failed; %d rows spilled", len(items))
            self.metrics.capture_failures.inc()
            self._spill_rows(batches)
        finally:
            for table, item in items:
                if table == "requests":
                    self._pending.pop(item.request_id, None)

    def _insert(self, batches: dict[str, list[dict[str, Any]]]) -> None:
        con = self._db()
        con.execute("BEGIN TRANSACTION")
        try:
            for table, rows in batches.items():
                if not rows:
                    continue
                batch = pa.Table.from_pylist(rows, schema=arrow_schema(table))
                con.register("_batch", batch)
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

    # -- spill -----------------------------------------------------------------------------

    def _spill_items(self, items: list[tuple[str, Any]]) -> None:
        batches: dict[str, list[dict[str, Any]]] = {"requests": [], "feedback": []}
        for table, item in items:
            row = item.to_row() if table == "requests" else item
            if row is not None:
                batches[table].append(row)
        self._spill_rows(batches)

    def _spill_rows(self, batches: dict[str, list[dict[str, Any]]]) -> None:
        self.spill_dir.mkdir(parents=True, exist_ok=True)
        for table, rows in batches.items():
            if not rows:
                continue
            name = f"{table}-{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}.jsonl"
            tmp = self.spill_dir / f".{name}.tmp"
            with tmp.open("wb") as f:
                for row in rows:
                    f.write(orjson.dumps(row, default=_json_default) + b"\n")
                f.flush()
                os.fsync(f.fileno())
            tmp.rename(self.spill_dir / name)
            self.metrics.capture_spilled.inc(len(rows))

    def _replay_spills(self) -> None:
        if not self.spill_dir.exists():
            return
        for path in sorted(self.spill_dir.glob("*.jsonl")):
            table = path.name.split("-", 1)[0]
            if table not in TABLE_COLUMNS:
                log.warning("spill: ignoring unknown file %s", path)
                continue
            rows = [_revive(table, orjson.loads(line)) for line in path.read_bytes().splitlines()]
            try:
                self._insert({table: rows})
                replayed = len(rows)
            except Exception:  # a bad row must not hold back the good ones, nor be dropped
                replayed = self._replay_one_by_one(table, rows, path)
            self.metrics.capture_replayed.inc(replayed)
            path.unlink()
            log.info("spill: replayed %d %s rows from %s", replayed, table, path.name)

    def _replay_one_by_one(self, table: str, rows: list[dict[str, Any]], path: Path) -> int:
        rejected = []
        for row in rows:
            try:
                self._insert({table: [row]})
            except Exception:
                rejected.append(row)
        if rejected:
            kept = self.spill_dir / "rejected" / path.name
            kept.parent.mkdir(exist_ok=True)
            kept.write_bytes(
                b"".join(orjson.dumps(r, default=_json_default) + b"\n" for r in rejected)
            )
            log.error("spill: %d rows cannot be written; kept in %s", len(rejected), kept)
        return len(rows) - len(rejected)

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


def _describe(item: Any) -> str:
    return str(getattr(item, "request_id", "feedback"))


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot serialise {type(value).__name__}")


def _revive(table: str, row: dict[str, Any]) -> dict[str, Any]:
    for column in TABLE_COLUMNS[table]:
        value = row.get(column.name)
        if pa.types.is_timestamp(column.arrow) and isinstance(value, str):
            row[column.name] = datetime.fromisoformat(value)
    return row
