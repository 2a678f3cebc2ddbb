"""Compaction: a route's small sealed segments of one day merged into one, no row lost or doubled.

100 replicas sealing every minute leave 144,000 files a day; every reader lists and opens them
all. `compact_route` merges, per (route, day, logbook), the segments into one file named like
a seal's, ``part-<logbook>-<first>-<last>.parquet``, over the union of their seq ranges (a
logbook's seals of one route and day have disjoint ranges, so the name is new). The merged
file names, in its Parquet footer (`REPLACES_KEY`), every file it replaces; readers
(`logbook.segments.segment_files`) leave those out wherever they still exist.

Order of work, and why a reader never sees a row twice or misses one:
1. the rows of the files to merge are written to a hidden temporary file and fsynced, then
   *linked* to the final name, which fails if that name exists (a file is never replaced),
   then the directory is fsynced. Before the link a reader sees the small files; from the
   link on it sees the merged file and skips the small ones it names: one copy either way.
2. a replaced file is deleted only once the merged file is `grace_s` old (a later run does
   it): a reader that listed the folder just before the link may still open the small files
   it listed, and finds them. A file a reader holds open is never rewritten.
A crash before the link leaves a temporary file, removed by a later run once `grace_s` old;
a crash after it leaves replaced files, skipped by readers and deleted by a later run. A merge
of a merged file names what that one replaced too, so deleting in any order stays safe.
Two compactors of one route take turns on a lock file (flock: released if one dies).
"""

from __future__ import annotations

import fcntl
import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from logbook.sealing import SEGMENT_DIRS, Part, parse_part, unreadable
from store.store import fsync_dir

REPLACES_KEY = b"apprentice.replaces"
GRACE_S = 3600.0


@dataclass
class CompactionReport:
    """What one run did, per table: files merged into new ones, and old files deleted."""

    route: str
    merged: int = 0  # new merged files
    replaced: int = 0  # small files they replace
    rows: int = 0  # rows in the new merged files
    deleted: int = 0  # replaced files removed (older than the grace period)
    days: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        return {"route": self.route, "merged": self.merged, "replaced": self.replaced,
                "rows": self.rows, "deleted": self.deleted, "days": self.days}  # fmt: skip


def replaced_by(path: Path) -> list[str]:
    """Names (in the same folder) of the files a merged segment replaces; [] for a seal's."""
    metadata = pq.read_schema(path).metadata or {}
    raw = metadata.get(REPLACES_KEY)
    return [str(name) for name in json.loads(raw)] if raw else []


def compact_route(
    root: Path,
    route: str,
    *,
    grace_s: float = GRACE_S,
    min_files: int = 2,
    clock: Callable[[], float] = time.time,
) -> CompactionReport:
    """Merge each day's segments of `route` (requests and feedback) under the store root."""
    report = CompactionReport(route)
    for table, folder in SEGMENT_DIRS.items():
        base = root / folder / f"route={route}"
        if not base.exists():
            continue
        with _locked(base):
            for day in sorted(p for p in base.iterdir() if p.name.startswith("date=")):
                _delete_expired(day, grace_s, clock, report)
                if _compact_day(day, table, min_files, report):
                    report.days.append(f"{table}/{day.name}")
    return report


def _live(day: Path, table: str) -> tuple[dict[str | None, list[tuple[Path, Part]]], set[str]]:
    """Readable segments of a day folder not replaced by another, by logbook; and the names
    replaced (still present or not)."""
    parts: list[tuple[Path, Part]] = []
    replaced: set[str] = set()
    for path in sorted(day.glob("*.parquet")):
        part = parse_part(path)
        if part is None or unreadable(path, table) is not None:
            continue  # not ours to touch: the sealer's reconcile quarantines such files
        parts.append((path, part))
        replaced.update(replaced_by(path))
    groups: dict[str | None, list[tuple[Path, Part]]] = {}
    for path, part in parts:
        if path.name not in replaced:
            groups.setdefault(part.logbook, []).append((path, part))
    return groups, replaced


def _compact_day(day: Path, table: str, min_files: int, report: CompactionReport) -> bool:
    groups, _ = _live(day, table)
    done = False
    for logbook, members in groups.items():
        if len(members) < min_files or logbook is None:
            continue  # files from before identities keep their names; one file is compact
        names = [p.name for p, _ in members]
        for path, _ in members:  # what a merged member replaced is replaced again
            names += replaced_by(path)
        first = min(part.first for _, part in members)
        last = max(part.last for _, part in members)
        target = day / f"part-{logbook}-{first:012d}-{last:012d}.parquet"
        table_data = _merged([p for p, _ in members], sorted(set(names)))
        if _link_new(table_data, target):
            report.merged += 1
            report.replaced += len(members)
            report.rows += table_data.num_rows
            done = True
    return done


def _merged(paths: list[Path], replaces: list[str]) -> pa.Table:
    tables = [pq.read_table(p) for p in paths]
    data = pa.concat_tables(tables, promote_options="default").sort_by("seq")
    metadata = dict(data.schema.metadata or {})
    metadata[REPLACES_KEY] = json.dumps(replaces).encode()
    return data.replace_schema_metadata(metadata)


def _link_new(data: pa.Table, target: Path) -> bool:
    """Write `data` durably under `target`, which must not exist (False when it does)."""
    tmp = target.with_name(f".compact-{uuid.uuid4().hex}.tmp")
    try:
        pq.write_table(data, tmp, compression="zstd")
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.link(tmp, target)  # unlike a rename, never replaces a file a reader may hold
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(target.parent)
    return True


def _delete_expired(
    day: Path, grace_s: float, clock: Callable[[], float], report: CompactionReport
) -> None:
    """Delete replaced files whose replacing file is older than the grace period, and stale
    temporary files of crashed runs."""
    now = clock()
    doomed: set[str] = set()
    for path in day.glob("*.parquet"):
        if parse_part(path) is None or now - path.stat().st_mtime < grace_s:
            continue
        try:
            doomed.update(replaced_by(path))
        except Exception:  # an unreadable file replaces nothing; the sealer quarantines it
            continue
    for name in sorted(doomed):
        if (day / name).exists():
            (day / name).unlink()
            report.deleted += 1
    for tmp in day.glob(".compact-*.tmp"):
        if now - tmp.stat().st_mtime >= grace_s:
            tmp.unlink(missing_ok=True)
    if doomed:
        fsync_dir(day)


@contextmanager
def _locked(folder: Path) -> Iterator[None]:
    with open(folder / ".compact.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
