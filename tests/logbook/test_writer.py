"""The logbook on a real DuckDB file: batches, spills and their replay, sealing exactly once."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq

from logbook.migrations import MIGRATIONS
from logbook.schema import FeedbackRow
from logbook.sealing import _write_atomically, segment_path
from logbook.segments import open_segments, segment_files
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


async def test_batches_commit_and_seal_once(tmp_path: Path) -> None:
    metrics = Metrics()
    logbook = await open_logbook(tmp_path, metrics)
    for i in range(1000):
        logbook.submit(Row(f"id{i:04d}", route="a" if i % 2 else "b"))
    await logbook.flush()
    assert metrics.capture_rows.labels("requests")._value.get() == 1000
    first = await logbook.seal()
    assert sorted((s.route, s.rows) for s in first) == [("a", 500), ("b", 500)]
    assert await logbook.seal() == []  # nothing new: nothing written
    await logbook.close()
    assert sorted(sealed_ids(tmp_path)) == [f"id{i:04d}" for i in range(1000)]
    assert len(segment_files(tmp_path)) == 2
    name = segment_files(tmp_path, route="a")[0]
    assert name.parent.name == "date=2026-11-23" and name.name.startswith("part-")


async def test_interrupted_seal_is_finished_at_open_without_duplicates(tmp_path: Path) -> None:
    metrics = Metrics()
    logbook = await open_logbook(tmp_path, metrics)
    for i in range(10):
        logbook.submit(Row(f"id{i}"))
    await logbook.flush()

    def crash_after_writing(con: duckdb.DuckDBPyConnection) -> None:
        data = con.sql("SELECT * FROM requests ORDER BY seq").to_arrow_table()
        path = segment_path(tmp_path, "requests", "r", datetime(2026, 11, 23).date(), 1, 10)
        _write_atomically(data, path)  # the file is there, its rows are still hot

    await logbook.run(crash_after_writing)
    # the process dies here: no close, no delete; the next server opens the same file
    logbook._executor.submit(lambda: logbook._db().close()).result()
    reopened = await open_logbook(tmp_path, Metrics())
    assert await reopened.run(
        lambda con: con.execute("SELECT count(*) FROM requests").fetchone()
    ) == (0,)
    for i in range(10, 15):
        reopened.submit(Row(f"id{i}"))
    await reopened.close()
    ids = sealed_ids(tmp_path)
    assert sorted(ids) == sorted(f"id{i}" for i in range(15)) and len(ids) == 15


async def test_failed_write_spills_and_is_replayed_at_next_open(tmp_path: Path) -> None:
    metrics = Metrics()
    logbook = await open_logbook(tmp_path, metrics)
    logbook.submit(Row("good-1"))
    logbook.submit(Row("bad", route=None))  # violates NOT NULL: the whole batch fails
    logbook.submit(Row("good-2"))
    await logbook.flush()
    assert metrics.capture_failures._value.get() == 1
    assert metrics.capture_spilled._value.get() == 3
    await logbook.close()
    assert sealed_ids(tmp_path) == []
    replay_metrics = Metrics()
    again = await open_logbook(tmp_path, replay_metrics)
    await again.close()
    assert sorted(sealed_ids(tmp_path)) == ["good-1", "good-2"]
    assert replay_metrics.capture_replayed._value.get() == 2
    rejected = list((tmp_path / "spill" / "rejected").glob("*.jsonl"))
    assert len(rejected) == 1 and b'"bad"' in rejected[0].read_bytes()
    assert list((tmp_path / "spill").glob("*.jsonl")) == []


async def test_queue_overflow_spills_instead_of_blocking(tmp_path: Path) -> None:
    metrics = Metrics()
    logbook = await open_logbook(tmp_path, metrics, queue_size=2)
    for i in range(5):
        logbook.submit(Row(f"id{i}"))
    await logbook.close()
    assert metrics.capture_spilled._value.get() == 3
    again = await open_logbook(tmp_path, Metrics())
    await again.close()
    assert sorted(sealed_ids(tmp_path)) == [f"id{i}" for i in range(5)]


async def test_route_of_knows_queued_committed_and_forgotten_ids_and_feedback_is_kept(
    tmp_path: Path,
) -> None:
    logbook = await open_logbook(tmp_path, Metrics())
    logbook.submit(Row("kept"))
    logbook.expect("private", "r")  # known from the request's start...
    assert await logbook.route_of("kept") == "r"  # known while still queued
    assert await logbook.route_of("private") == "r"
    logbook.forget("private")  # ...but its client asked for no capture
    await logbook.flush()
    assert await logbook.route_of("kept") == "r"  # and once committed
    assert await logbook.route_of("private") is None
    logbook.submit_feedback(
        FeedbackRow(
            feedback_id="fb1",
            request_id="kept",
            route="r",
            created_at=datetime(2026, 11, 23),
            score=1.0,
            label=None,
            comment=None,
            correction=None,
        )
    )
    await logbook.close()
    assert sealed_ids(tmp_path) == ["kept"]
    feedback = segment_files(tmp_path, "feedback")
    assert len(feedback) == 1 and pq.read_table(feedback[0]).num_rows == 1


async def test_migrations_are_recorded_and_not_reapplied(tmp_path: Path) -> None:
    logbook = await open_logbook(tmp_path, Metrics())
    await logbook.close()
    again = await open_logbook(tmp_path, Metrics())
    rows = await again.run(
        lambda con: con.execute("SELECT version FROM schema_migrations").fetchall()
    )
    await again.close()
    assert rows == [(n,) for n in range(1, len(MIGRATIONS) + 1)]
