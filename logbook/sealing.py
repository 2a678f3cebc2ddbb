"""Sealing: committed logbook rows move to immutable Parquet segments, exactly once.

A segment holds one route's rows of one day, a contiguous range of `seq` among them, written by
one logbook: ``segments/route=<r>/date=<d>/part-<logbook>-<first>-<last>.parquet`` (feedback
goes to ``feedback/``). `<logbook>` is the first 12 hex digits of the logbook's identity, made
once with its file: sequence numbers restart in a new logbook (one that replaced a corrupt
file, or another replica), so without it a fresh logbook's first seal would land on an old
name. Files from before identities (``part-<first>-<last>.parquet``) stay readable.

Order of work, and why it cannot lose, duplicate or overwrite a row:
1. the rows are written to a hidden temporary file and fsynced, then *linked* to the final name,
   which fails if that name exists (a seal never replaces a file), then the directory is fsynced
   (a reader never sees half a file; readers glob ``*.parquet`` only);
2. in one transaction the segment is recorded and its rows are deleted from the hot table.
A crash between 1 and 2 leaves a finished file whose rows are still hot. At the next open,
`reconcile_segments` finds the file unrecorded and finishes step 2 for exactly the rows the
file holds: the route, day and seq range from its name, and the request ids in it, so a hot row
that merely shares a seq number is never deleted. A file that exists where a seal would write
is the same case met without a restart, and is finished the same way.

Segments go to the shared store's root (`store.Store`), not to `data_dir`: a shared directory,
or for an object store a local mirror. For an object store the file is *staged* in step 1
(a durable mark beside it, made before the link, so no linked file ever lacks its mark) and
pushed, exclusively, after step 2 by `logbook.uploads`; the mark goes only once the push
succeeded. A push that fails leaves the sealed file in the mirror, marked, and is tried again
at the next seal: the file on this disk is the rows' one copy until then, fsynced like a seal.
Replicas sharing one store never collide: names carry each logbook's identity, a temporary
file carries it too, and reconciling touches only this logbook's files.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import duckdb
import pyarrow.parquet as pq

from logbook.schema import TABLE_COLUMNS, TIME_COLUMN
from logbook.transaction import transaction
from store.store import Store, fsync_dir

log = logging.getLogger("apprentice.logbook")
SEGMENT_DIRS = {"requests": "segments", "feedback": "feedback"}
KEY_COLUMN = {"requests": "request_id", "feedback": "feedback_id"}
_PART = re.compile(r"^part-(?:(?P<id>[0-9a-f]{12})-)?(?P<first>\d+)-(?P<last>\d+)\.parquet$")
_TMP = re.compile(r"^\.part-(?:(?P<id>[0-9a-f]{12})-)?\d+-\d+\.tmp$")


@dataclass(frozen=True)
class SealedSegment:
    table: str
    route: str
    date: date
    first_seq: int
    last_seq: int
    rows: int
    path: Path


@dataclass(frozen=True)
class Part:
    """What a segment's path says about it."""

    logbook: str | None  # None: written before logbooks had identities
    route: str
    day: date
    first: int
    last: int


def parse_part(path: Path) -> Part | None:
    """The segment a path names, or None when it is not a segment's name."""
    match = _PART.match(path.name)
    route, day = path.parent.parent.name, path.parent.name
    if match is None or not route.startswith("route=") or not day.startswith("date="):
        return None
    try:
        parsed = date.fromisoformat(day.removeprefix("date="))
    except ValueError:
        return None
    first, last = int(match["first"]), int(match["last"])
    return Part(match["id"], route.removeprefix("route="), parsed, first, last)


def segment_path(
    root: Path, table: str, route: str, day: date, first: int, last: int, logbook: str
) -> Path:
    folder = root / SEGMENT_DIRS[table] / f"route={route}" / f"date={day.isoformat()}"
    return folder / f"part-{logbook[:12]}-{first:012d}-{last:012d}.parquet"


def seal_table(
    con: duckdb.DuckDBPyConnection, store: Store, table: str, logbook: str
) -> list[SealedSegment]:
    """Seal every committed row of `table` into the store's root; return the segments
    written (for an object store, staged: `logbook.uploads` pushes them)."""
    day_of = f"CAST({TIME_COLUMN[table]} AS DATE)"
    groups = con.execute(
        f"SELECT route, {day_of}, min(seq), max(seq), count(*) FROM {table} GROUP BY ALL ORDER BY 3"
    ).fetchall()
    cols = ", ".join(["seq", *(c.name for c in TABLE_COLUMNS[table])])
    sealed = []
    for route, day, first, last, rows in groups:
        path = segment_path(store.root, table, route, day, first, last, logbook)
        data = con.sql(
            f"SELECT {cols} FROM {table} WHERE route = ? AND {day_of} = ? "
            f"AND seq BETWEEN ? AND ? ORDER BY seq",
            params=[route, day, first, last],
        ).to_arrow_table()
        if not _write_new(data, path, store.stage if store.remote else None):
            log.warning("seal: %s exists already; finishing that seal instead", path)
        part = Part(logbook[:12], route, day, first, last)
        rows = _record_and_delete(con, table, path, part)
        sealed.append(SealedSegment(table, route, day, first, last, rows, path))
    return sealed


def reconcile_segments(
    con: duckdb.DuckDBPyConnection, root: Path, logbook: str, quarantine: Path
) -> tuple[int, list[Path]]:
    """Finish seals interrupted between writing a file and deleting its rows, and move files
    that are not readable segments to `quarantine`. Returns (seals finished, quarantined).

    `root` is the store's root, which other replicas may share: their files and their
    unfinished temporary files are left alone."""
    recorded = {row[0] for row in con.execute("SELECT path FROM segments").fetchall()}
    finished, moved = 0, []
    for table, folder in SEGMENT_DIRS.items():
        tables = root / folder
        if not tables.exists():
            continue
        for tmp in tables.rglob(".part-*.tmp"):
            match = _TMP.match(tmp.name)
            if match is not None and match["id"] in (None, logbook[:12]):
                tmp.unlink(missing_ok=True)  # our unfinished write; its rows are still hot
        for path in sorted(tables.rglob("*.parquet")):
            if str(path) in recorded:
                continue
            part = parse_part(path)
            if part is None:
                moved.append(_quarantine(path, root, quarantine, "not a segment's name"))
                continue
            if part.logbook not in (None, logbook[:12]):
                continue  # another logbook's history (a replaced file, another replica)
            if (problem := unreadable(path, table)) is not None:
                moved.append(_quarantine(path, root, quarantine, problem))
                continue
            if _record_and_delete(con, table, path, part):
                finished += 1
    return finished, moved


def unreadable(path: Path, table: str) -> str | None:
    """Why a Parquet file is not a segment of `table`, or None when it is one."""
    try:
        names = set(pq.read_schema(path).names)
    except Exception as exc:  # any reader error means the same: not a usable segment
        return f"unreadable Parquet ({type(exc).__name__}: {exc})"
    missing = {KEY_COLUMN[table], "seq", "route"} - names
    return f"not a {table} segment (no {', '.join(sorted(missing))})" if missing else None


def _quarantine(path: Path, root: Path, quarantine: Path, why: str) -> Path:
    target = quarantine / path.relative_to(root)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        target = target.with_name(f"{target.stem}.{os.getpid()}{target.suffix}")
    shutil.move(str(path), target)
    log.error("segment %s quarantined to %s: %s", path, target, why)
    return target


def _write_new(data: object, path: Path, stage: Callable[[Path], None] | None = None) -> bool:
    """Write `data` to `path` durably; False (and nothing written) when `path` exists.

    `stage(path)`, when given, marks the file for a push before it is linked."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp")
    try:
        pq.write_table(data, tmp, compression="zstd")  # type: ignore[arg-type]
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        if stage is not None:
            stage(path)  # before the link: a file under its final name is always marked
    except BaseException:
        tmp.unlink(missing_ok=True)  # a full disk: the rows stay hot for the next seal
        raise
    try:
        os.link(tmp, path)  # unlike a rename, a link never replaces an existing file
    except FileExistsError:
        return False  # an earlier seal's file (and its mark, when it had one) stays
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)
    return True


def _record_and_delete(con: duckdb.DuckDBPyConnection, table: str, path: Path, part: Part) -> int:
    """Record the segment and delete exactly its rows from the hot table; returns its rows."""
    key = KEY_COLUMN[table]
    keys = pq.read_table(path, columns=[key]).column(key).to_pylist()
    with transaction(con):
        con.execute(
            "INSERT INTO segments VALUES (?, ?, ?, ?, ?, ?, ?, now()::TIMESTAMP) "
            "ON CONFLICT DO NOTHING",
            [str(path), table, part.route, part.day, part.first, part.last, len(keys)],
        )
        con.execute(
            f"DELETE FROM {table} WHERE route = ? AND CAST({TIME_COLUMN[table]} AS DATE) = ? "
            f"AND seq BETWEEN ? AND ? AND {key} IN (SELECT unnest(?::VARCHAR[]))",
            [part.route, part.day, part.first, part.last, keys],
        )
    return len(keys)
