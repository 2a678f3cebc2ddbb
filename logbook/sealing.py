"""Sealing: committed logbook rows move to immutable Parquet segments, exactly once.

A segment holds one route's rows of one day, a contiguous range of `seq` among them:
``segments/route=<r>/date=<d>/part-<first>-<last>.parquet`` (feedback goes to ``feedback/``).

Order of work, and why it cannot lose or duplicate a row:
1. the rows are written to a hidden temporary file, fsynced, then renamed to the final name
   (a reader never sees half a file; readers glob ``*.parquet`` only);
2. in one transaction the segment is recorded and its rows are deleted from the hot table.
A crash between 1 and 2 leaves a finished file whose rows are still hot. At the next open,
`reconcile_segments` finds the file unrecorded and finishes step 2 for exactly the rows the
file holds (route, date and seq range are in its path), so the rows are never sealed twice.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import duckdb
import pyarrow.parquet as pq

from logbook.schema import TABLE_COLUMNS, TIME_COLUMN

SEGMENT_DIRS = {"requests": "segments", "feedback": "feedback"}
_PART = re.compile(r"^part-(\d+)-(\d+)\.parquet$")


@dataclass(frozen=True)
class SealedSegment:
    table: str
    route: str
    date: date
    first_seq: int
    last_seq: int
    rows: int
    path: Path


def segment_path(data_dir: Path, table: str, route: str, day: date, first: int, last: int) -> Path:
    folder = data_dir / SEGMENT_DIRS[table] / f"route={route}" / f"date={day.isoformat()}"
    return folder / f"part-{first:012d}-{last:012d}.parquet"


def seal_table(con: duckdb.DuckDBPyConnection, data_dir: Path, table: str) -> list[SealedSegment]:
    """Seal every committed row of `table`; return the segments written."""
    day_of = f"CAST({TIME_COLUMN[table]} AS DATE)"
    groups = con.execute(
        f"SELECT route, {day_of}, min(seq), max(seq), count(*) FROM {table} GROUP BY ALL ORDER BY 3"
    ).fetchall()
    cols = ", ".join(["seq", *(c.name for c in TABLE_COLUMNS[table])])
    sealed = []
    for route, day, first, last, rows in groups:
        path = segment_path(data_dir, table, route, day, first, last)
        data = con.sql(
            f"SELECT {cols} FROM {table} WHERE route = ? AND {day_of} = ? "
            f"AND seq BETWEEN ? AND ? ORDER BY seq",
            params=[route, day, first, last],
        ).to_arrow_table()
        _write_atomically(data, path)
        _record_and_delete(con, table, path, route, day, first, last, rows)
        sealed.append(SealedSegment(table, route, day, first, last, rows, path))
    return sealed


def reconcile_segments(con: duckdb.DuckDBPyConnection, data_dir: Path) -> int:
    """Finish seals interrupted between writing a file and deleting its rows; return count."""
    recorded = {row[0] for row in con.execute("SELECT path FROM segments").fetchall()}
    finished = 0
    for table, folder in SEGMENT_DIRS.items():
        root = data_dir / folder
        if not root.exists():
            continue
        for tmp in root.rglob(".part-*.tmp"):
            tmp.unlink()  # an unfinished write; its rows are still hot
        for path in root.rglob("part-*.parquet"):
            if str(path) in recorded:
                continue
            match = _PART.match(path.name)
            route = path.parent.parent.name.removeprefix("route=")
            day = date.fromisoformat(path.parent.name.removeprefix("date="))
            if match is None:
                continue
            first, last = int(match.group(1)), int(match.group(2))
            rows = pq.read_metadata(path).num_rows
            _record_and_delete(con, table, path, route, day, first, last, rows)
            finished += 1
    return finished


def _write_atomically(data: object, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp")
    pq.write_table(data, tmp, compression="zstd")  # type: ignore[arg-type]
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _record_and_delete(
    con: duckdb.DuckDBPyConnection,
    table: str,
    path: Path,
    route: str,
    day: date,
    first: int,
    last: int,
    rows: int,
) -> None:
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute(
            "INSERT INTO segments VALUES (?, ?, ?, ?, ?, ?, ?, now()::TIMESTAMP)",
            [str(path), table, route, day, first, last, rows],
        )
        con.execute(
            f"DELETE FROM {table} WHERE route = ? AND CAST({TIME_COLUMN[table]} AS DATE) = ? "
            f"AND seq BETWEEN ? AND ?",
            [route, day, first, last],
        )
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        raise
