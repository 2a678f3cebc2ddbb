"""The logbook on a real DuckDB file: batches, the journal and its replay, rows kept aside,
sealing exactly once and never over another file."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from logbook.migrations import MIGRATIONS
from logbook.schema import FeedbackRow
from logbook.sealing import _write_new, segment_path
from logbook.segments import Skipped, open_segments, segment_files
from logbook.settings import LogbookSettings
from logbook.writer import Logbook
from monitoring.metrics import Metrics
from tests.logbook.rows import Row


def sealed_ids(data_dir: Path) -> list[str]:
    con = open_segments(data_dir)
    return [r[0] for r in con.execute("SELECT request_id FROM requests ORDER BY seq").fetchall()]


async def open_logbook(data_dir: Path, metrics: Metrics, **config: Any) -> Logbook:
    logbook = Logbook(data_dir, LogbookSettings(**config), metrics)
    await logbook.open(background=False)
    return logbook


async def crash(logbook: Logbook) -> None:
    """The process dies: no flush, no seal; only what is on disk survives."""
    logbook.journal.close()
    logbook._executor.submit(lambda: logbook._db().close()).result()


async def test_batches_commit_and_seal_once_under_the_logbooks_name(tmp_path: Path) -> None:
    metrics = Metrics()
    logbook = await open_logbook(tmp_path, metrics)
    for i in range(1000):
        logbook.submit(Row(f"id{i:04d}", route="a" if i % 2 else "b"))
    assert await logbook.flush()
    assert metrics.capture_rows.labels("requests")._value.get() == 1000
    first = await logbook.seal()
    assert sorted((s.route, s.rows) for s in first) == [("a", 500), ("b", 500)]
    assert await logbook.seal() == []  # nothing new: nothing written
    await logbook.close()
    assert sorted(sealed_ids(tmp_path)) == [f"id{i:04d}" for i in range(1000)]
    assert len(segment_files(tmp_path)) == 2
    name = segment_files(tmp_path, route="a")[0]
    assert name.parent.name == "date=2026-11-23"
    assert name.name.startswith(f"part-{logbook.identity[:12]}-")
    assert list((tmp_path / "journal").glob("journal-*")) == []  # sealed: journal emptied


async def test_a_crash_loses_no_row_that_was_submitted(tmp_path: Path) -> None:
    logbook = await open_logbook(tmp_path, Metrics())
    for i in range(5):
        logbook.submit(Row(f"committed-{i}"))
    assert await logbook.flush()  # committed, not sealed
    for i in range(3):
        logbook.submit(Row(f"queued-{i}"))  # journaled and queued, never committed
    await crash(logbook)
    metrics = Metrics()
    again = await open_logbook(tmp_path, metrics)
    assert metrics.capture_replayed._value.get() == 3  # the committed five are not doubled
    await again.close()
    ids = sealed_ids(tmp_path)
    assert sorted(ids) == sorted([f"committed-{i}" for i in range(5)] +
                                 [f"queued-{i}" for i in range(3)])  # fmt: skip


async def test_a_torn_last_journal_line_is_skipped_and_the_rest_replayed(tmp_path: Path) -> None:
    logbook = await open_logbook(tmp_path, Metrics())
    logbook.submit(Row("whole"))
    await crash(logbook)
    [journal] = (tmp_path / "journal").glob("journal-*.jsonl")
    with journal.open("ab") as f:
        f.write(b'{"t": "requests", "r": {"request_id": "torn", "sche')  # died mid-write
    again = await open_logbook(tmp_path, Metrics())
    await again.close()
    assert sealed_ids(tmp_path) == ["whole"]


async def test_interrupted_seal_is_finished_at_open_without_duplicates(tmp_path: Path) -> None:
    logbook = await open_logbook(tmp_path, Metrics())
    for i in range(10):
        logbook.submit(Row(f"id{i}"))
    await logbook.flush()
    identity = logbook.identity

    def crash_after_writing(con: duckdb.DuckDBPyConnection) -> None:
        data = con.sql("SELECT * FROM requests ORDER BY seq").to_arrow_table()
        day = datetime(2026, 11, 23).date()
        path = segment_path(tmp_path, "requests", "r", day, 1, 10, identity)
        assert _write_new(data, path)  # the file is there, its rows are still hot

    await logbook.run(crash_after_writing)
    await crash(logbook)
    reopened = await open_logbook(tmp_path, Metrics())
    assert await reopened.run(
        lambda con: con.execute("SELECT count(*) FROM requests").fetchone()
    ) == (0,)
    for i in range(10, 15):
        reopened.submit(Row(f"id{i}"))
    await reopened.close()
    ids = sealed_ids(tmp_path)
    assert sorted(ids) == sorted(f"id{i}" for i in range(15)) and len(ids) == 15


async def test_a_fresh_logbook_beside_old_segments_never_writes_over_them(tmp_path: Path) -> None:
    old = await open_logbook(tmp_path, Metrics())
    for i in range(37):
        old.submit(Row(f"old-{i}"))
    await old.close()
    (tmp_path / "apprentice.duckdb").unlink()  # a corrupt file replaced by a new one
    fresh = await open_logbook(tmp_path, Metrics())
    assert fresh.identity != old.identity
    for i in range(37):  # the same seq numbers, 1 to 37, again
        fresh.submit(Row(f"new-{i}"))
    await fresh.close()
    assert len(segment_files(tmp_path)) == 2
    assert sorted(sealed_ids(tmp_path)) == sorted(
        [f"old-{i}" for i in range(37)] + [f"new-{i}" for i in range(37)]
    )


async def test_a_row_the_database_refuses_is_kept_aside_and_its_batch_written(
    tmp_path: Path,
) -> None:
    metrics = Metrics()
    logbook = await open_logbook(tmp_path, metrics)
    logbook.submit(Row("good-1"))
    logbook.submit(Row("bad", route=None))  # violates NOT NULL
    logbook.submit(Row("good-2"))
    assert await logbook.flush()
    assert metrics.capture_rejected._value.get() == 1
    assert metrics.capture_rows.labels("requests")._value.get() == 2
    await logbook.close()
    assert sorted(sealed_ids(tmp_path)) == ["good-1", "good-2"]
    [kept] = (tmp_path / "journal" / "rejected").glob("*.jsonl")
    record = orjson.loads(kept.read_bytes().splitlines()[0])
    assert record["r"]["request_id"] == "bad" and "NOT NULL" in record["why"]


async def test_a_full_queue_turns_readiness_off_and_loses_nothing(tmp_path: Path) -> None:
    metrics = Metrics()
    logbook = await open_logbook(tmp_path, metrics, queue_size=2)
    for i in range(5):
        logbook.submit(Row(f"id{i}"))
    assert logbook.degraded is not None and "queue is full" in logbook.degraded
    assert metrics.capture_degraded._value.get() == 1
    assert metrics.capture_spilled._value.get() == 3  # waited in the journal only
    assert await logbook.flush()  # the queue and the journal's extra rows
    assert logbook.degraded is None and metrics.capture_degraded._value.get() == 0
    assert metrics.capture_replayed._value.get() == 3
    await logbook.close()
    assert sorted(sealed_ids(tmp_path)) == [f"id{i}" for i in range(5)]


async def test_owners_of_queued_and_committed_requests_and_feedback_is_kept(
    tmp_path: Path,
) -> None:
    logbook = await open_logbook(tmp_path, Metrics())
    logbook.submit(Row("mine", key_id="key_a"))
    assert await logbook.owner_of("mine") == ("r", "key_a")  # known while still queued
    assert await logbook.flush()
    assert await logbook.owner_of("mine") == ("r", "key_a")  # and once committed
    assert await logbook.owner_of("never-logged") is None
    logbook.submit_feedback(
        FeedbackRow(
            feedback_id="fb1", request_id="mine", route="r", created_at=datetime(2026, 11, 23),
            score=1.0, label=None, comment=None, correction=None,
        )
    )  # fmt: skip
    await logbook.close()
    assert sealed_ids(tmp_path) == ["mine"]
    feedback = segment_files(tmp_path, "feedback")
    assert len(feedback) == 1 and pq.read_table(feedback[0]).num_rows == 1


async def test_foreign_and_corrupt_segment_files_are_quarantined_and_skipped(
    tmp_path: Path,
) -> None:
    logbook = await open_logbook(tmp_path, Metrics())
    logbook.submit(Row("real"))
    await logbook.close()
    folder = segment_files(tmp_path)[0].parent
    torn = folder / f"part-{logbook.identity[:12]}-000000000005-000000000009.parquet"
    torn.write_bytes(b"PAR1 not really")
    foreign = folder / "part-export.parquet"
    pq.write_table(pa.table({"x": [1]}), foreign)

    skipped: list[Skipped] = []
    assert sealed_ids(tmp_path) == ["real"]  # readers leave both out...
    open_segments(tmp_path, skipped=skipped)
    assert sorted(s.path.name for s in skipped) == sorted([torn.name, foreign.name])
    metrics = Metrics()
    again = await open_logbook(tmp_path, metrics)  # ...and the server starts, moving them
    await again.close()
    assert metrics.segments_quarantined._value.get() == 2
    moved = sorted(p.name for p in (tmp_path / "quarantine").rglob("*.parquet"))
    assert moved == sorted([torn.name, foreign.name])
    assert sealed_ids(tmp_path) == ["real"]


async def test_migrations_are_recorded_and_not_reapplied(tmp_path: Path) -> None:
    logbook = await open_logbook(tmp_path, Metrics())
    identity = logbook.identity
    await logbook.close()
    again = await open_logbook(tmp_path, Metrics())
    rows = await again.run(
        lambda con: con.execute("SELECT version FROM schema_migrations").fetchall()
    )
    await again.close()
    assert rows == [(n,) for n in range(1, len(MIGRATIONS) + 1)]
    assert again.identity == identity and len(identity) == 32
