"""Readers of sealed segments: what every process but the server uses to see the log.

`segment_files` lists the readable segments of a table; `open_segments(store)` returns an
in-memory DuckDB connection with two views, `requests` and `feedback`, over them (empty views
with the right columns when nothing is sealed yet). Any other engine can read the same files.

Both take the shared store (`store.Store`): they pull the folders they read first (for an
object store, the files its mirror lacks; for a directory, nothing), then read under its root,
so every replica's segments are seen. Given a plain path instead, they read the files under it
as they are, pulling nothing: the store's root, or a `data_dir` from before stores.

A file that is not a readable segment (a foreign file dropped in the folder, a torn copy, a
disk error) is left out, never fatal: it is listed in `skipped` for the caller to report. Each
file is checked once per (size, mtime), so a reader that lists every few seconds (the
scheduler) does not re-read footers.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import duckdb

from logbook.compaction import replaced_by
from logbook.schema import TABLE_COLUMNS
from logbook.sealing import SEGMENT_DIRS, parse_part, unreadable
from store.store import Store

Source = Store | Path  # a store (pulled first) or a root to read as it is


@dataclass(frozen=True)
class Skipped:
    """A file under the segment folders that could not be read as a segment."""

    path: Path
    reason: str

    def as_dict(self) -> dict[str, str]:
        return {"path": str(self.path), "reason": self.reason}


def segment_files(
    source: Source,
    table: str = "requests",
    route: str | None = None,
    skipped: list[Skipped] | None = None,
) -> list[Path]:
    """Readable segment files of a table, optionally of one route, sorted by name; a store
    is pulled first (raising StoreUnavailable when it cannot be reached).

    Unreadable ones are left out and, when `skipped` is given, appended to it."""
    folder = SEGMENT_DIRS[table] + (f"/route={route}" if route else "")
    if isinstance(source, Store):
        source.pull(folder)
    root = (source.root if isinstance(source, Store) else source) / SEGMENT_DIRS[table]
    if not root.exists():
        return []
    pattern = f"route={route}/date=*/*.parquet" if route else "route=*/date=*/*.parquet"
    files = []
    replaced: set[Path] = set()
    for path in sorted(root.glob(pattern), key=lambda p: p.name):
        reason = _problem(path, table)
        if reason is None:
            files.append(path)
            replaced.update(path.parent / name for name in _replaces(path))
        elif skipped is not None:
            skipped.append(Skipped(path, reason))
    # A compacted segment holds the rows of the files it names (logbook.compaction), which
    # may linger for a while: reading both would count their rows twice.
    return [p for p in files if p not in replaced]


def _replaces(path: Path) -> tuple[str, ...]:
    try:
        stat = path.stat()
        return _replaces_cached(str(path), stat.st_size, stat.st_mtime_ns)
    except OSError:  # deleted since it was listed (compaction's grace is over): skip nothing
        return ()


@functools.lru_cache(maxsize=65_536)
def _replaces_cached(path: str, size: int, mtime_ns: int) -> tuple[str, ...]:
    return tuple(replaced_by(Path(path)))


def _problem(path: Path, table: str) -> str | None:
    if parse_part(path) is None:
        return "not a segment's name"
    try:
        stat = path.stat()
    except OSError as exc:
        return f"cannot stat ({exc})"
    return _checked(str(path), stat.st_size, stat.st_mtime_ns, table)


@functools.lru_cache(maxsize=65_536)
def _checked(path: str, size: int, mtime_ns: int, table: str) -> str | None:
    # size and mtime are part of the key: a file replaced in place is checked again.
    return unreadable(Path(path), table)


def open_segments(
    source: Source, route: str | None = None, skipped: list[Skipped] | None = None
) -> duckdb.DuckDBPyConnection:
    """An in-memory connection with `requests` and `feedback` views over readable segments
    (of every replica: a store is pulled first, see `segment_files`)."""
    con = duckdb.connect(":memory:")
    for table in TABLE_COLUMNS:
        create_view(con, table, table, segment_files(source, table, route, skipped))
    return con


def create_view(con: duckdb.DuckDBPyConnection, name: str, table: str, files: list[Path]) -> None:
    """A view `name` with every column of `table` over exactly these segment files."""
    if not files:
        con.execute(f"CREATE VIEW {name} AS SELECT {_nulls(table, set())} WHERE false")
        return
    listing = ", ".join(_quote(str(p)) for p in files)
    scan = f"read_parquet([{listing}], hive_partitioning = false, union_by_name = true)"
    present = {row[0] for row in con.execute(f"DESCRIBE SELECT * FROM {scan}").fetchall()}
    # Segments sealed before a column existed lack it: the view still has every column.
    missing = _nulls(table, present)
    con.execute(f"CREATE VIEW {name} AS SELECT *{', ' + missing if missing else ''} FROM {scan}")


def _nulls(table: str, present: set[str]) -> str:
    """NULL columns of the declared ones that `present` lacks, for a view's select list."""
    declared = [("seq", "BIGINT")] + [(c.name, c.sql.split()[0]) for c in TABLE_COLUMNS[table]]
    return ", ".join(f"CAST(NULL AS {kind}) AS {name}" for name, kind in declared
                     if name not in present)  # fmt: skip


def describe_skipped(skipped: list[Skipped]) -> str:
    """One sentence for a command's stderr."""
    head = f"skipped {len(skipped)} unreadable segment file{'s' if len(skipped) != 1 else ''}"
    shown = "; ".join(f"{s.path}: {s.reason}" for s in skipped[:3])
    more = f"; and {len(skipped) - 3} more" if len(skipped) > 3 else ""
    return f"{head} ({shown}{more}); they are left out."


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
