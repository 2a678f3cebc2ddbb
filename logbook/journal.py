"""The journal: every row, on disk, before its answer completes; replayed at start.

Why it exists: the writer commits queued rows every `flush_interval_ms`; a SIGKILL (or an OOM
kill, or a crash) between an answer and that commit would lose the row the client was given.
So `append` writes the row with one unbuffered `write(2)` to the current journal file before
the proxy sends the answer's last byte. That survives the process dying (the bytes are in the
kernel's page cache); with `fsync = true` each append is also flushed to the device, which
survives power loss at the price of one device flush per request.

Order of work, and why it cannot lose or duplicate a row:
1. `append` goes to the *current* file, on the event loop (so appends and rotation never race).
2. Each flush first `rotate`s: the current file is closed and joins `waiting`, and a new one
   takes later appends. Every row of a waiting file is in the batch that flush commits (or, when
   the queue was full, only on disk: such a file is marked and read back from disk).
3. After that commit the waiting files are `committed`; they are deleted only after the next
   *seal* (Parquet written, fsynced, renamed, rows deleted in one transaction), because
   DuckDB's own write-ahead log is not fsynced per commit: until the rows are sealed, the journal
   is what brings them back.
4. At start every journal file left behind is replayed: rows whose request id the logbook
   already holds are skipped (they were committed before the crash), the rest inserted.
A failed or partial last line (the process died mid-write) is the one row that was never
acknowledged; it is skipped and counted.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import orjson

from logbook.schema import ROW_TYPES, Row, row_from_dict, table_of

log = logging.getLogger("apprentice.logbook")
_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_CLOEXEC", 0)
COMMITTED = ".committed.jsonl"  # a journal file whose rows the database had committed


@dataclass
class JournalFile:
    path: Path
    disk_only: bool = False  # some of its rows never reached the in-memory queue
    rows: int = 0


@dataclass
class Journal:
    """Journal files under `folder`; `append` is called on the event loop only."""

    folder: Path
    fsync: bool = False
    waiting: list[JournalFile] = field(default_factory=list)  # rotated, not yet committed
    committed: list[Path] = field(default_factory=list)  # committed, not yet sealed

    def __post_init__(self) -> None:
        self._fd: int | None = None
        self._current: JournalFile | None = None
        self._serial = 0
        self._next_try = 0.0  # when a journal that could not be opened is tried again

    def leftover(self) -> list[Path]:
        """Journal files a previous process left behind, oldest first."""
        return sorted(self.folder.glob("journal-*.jsonl")) if self.folder.exists() else []

    def start(self) -> None:
        """Open a fresh current file (after the leftovers were replayed)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self._open_next()

    def append(self, row: Row, queued: bool) -> bool:
        """Write one row; False when it could not be written (the disk is full, say).

        `queued` says whether the row also sits in the writer's queue; a file holding rows
        that do not is read back from disk when it is committed."""
        if self._fd is None and time.monotonic() >= self._next_try:
            self._open_next()
        if self._fd is None or self._current is None:
            return False
        line = orjson.dumps({"t": table_of(row), "r": row}) + b"\n"
        try:
            written = os.write(self._fd, line)
            if written != len(line):  # a short write: the rest would interleave; start over
                raise OSError(f"short journal write ({written} of {len(line)} bytes)")
            if self.fsync:
                os.fsync(self._fd)
        except OSError as exc:
            log.error("journal: cannot append to %s: %s", self._current.path, exc)
            self._reopen()
            return False
        self._current.rows += 1
        if not queued:
            self._current.disk_only = True
        return True

    def rotate(self) -> list[JournalFile]:
        """Close the current file into `waiting` and open the next; returns `waiting`.
        An empty current file is kept: an idle server makes no files."""
        if self._current is not None and self._current.rows == 0:
            return list(self.waiting)
        if self._current is not None:
            self._close()
            self.waiting.append(self._current)
            self._current = None
        self._open_next()
        return list(self.waiting)

    def mark_committed(self, files: list[JournalFile]) -> None:
        """These files' rows are in the database now; they wait for the next seal. The name
        says so on disk, so that a restart can tell a lost commit from an unfinished one."""
        for f in files:
            if f in self.waiting:
                self.waiting.remove(f)
            done = f.path.with_name(f.path.name.removesuffix(".jsonl") + COMMITTED)
            try:
                os.replace(f.path, done)
            except OSError:
                done = f.path  # still replayed (and deduplicated) at the next start
            self.committed.append(done)

    def sealed(self, paths: list[Path]) -> None:
        """The rows of `paths` are in fsynced segments: the files are not needed any more."""
        for path in paths:
            path.unlink(missing_ok=True)
            if path in self.committed:
                self.committed.remove(path)

    def close(self) -> None:
        """Close the current file (removed when it holds no row)."""
        self._close()
        if self._current is not None and self._current.rows == 0:
            self._current.path.unlink(missing_ok=True)
        self._current = None

    # -- files -----------------------------------------------------------------------------

    def _open_next(self) -> None:
        self._serial += 1
        name = f"journal-{datetime.now(UTC):%Y%m%dT%H%M%S%f}-{os.getpid()}-{self._serial:06d}.jsonl"
        path = self.folder / name
        try:
            self._fd = os.open(path, _FLAGS, 0o600)
            self._current = JournalFile(path)
        except OSError as exc:
            log.error("journal: cannot open %s: %s", path, exc)
            self._fd, self._current = None, None
            self._next_try = time.monotonic() + 1.0

    def _reopen(self) -> None:
        # After a failed write the file may end in half a line: later rows go to a new file.
        current = self._current
        self._close()
        if current is not None and current.rows:
            self.waiting.append(current)
        elif current is not None:
            current.path.unlink(missing_ok=True)
        self._open_next()

    def _close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None


def read_rows(path: Path) -> tuple[list[Row], int]:
    """The rows of a journal (or legacy spill) file and how many lines were unreadable."""
    rows: list[Row] = []
    bad = 0
    legacy_table = path.name.split("-", 1)[0]  # spill files: <table>-<time>-<id>.jsonl
    for line in _lines(path):
        try:
            data = orjson.loads(line)
            if isinstance(data, dict) and "t" in data and "r" in data:
                rows.append(row_from_dict(data["t"], data["r"]))
            elif legacy_table in ROW_TYPES:
                rows.append(row_from_dict(legacy_table, data))
            else:
                bad += 1
        except (orjson.JSONDecodeError, TypeError, ValueError, KeyError):
            bad += 1
    return rows, bad


def _lines(path: Path) -> Iterator[bytes]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        log.error("journal: cannot read %s: %s", path, exc)
        return
    for line in data.splitlines():
        if line.strip():
            yield line


def write_rejected(folder: Path, rows: list[Row], why: Callable[[Row], str]) -> Path:
    """Rows the database refuses, kept as JSON lines with the reason (never dropped)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"rejected-{datetime.now(UTC):%Y%m%dT%H%M%S%f}.jsonl"
    with path.open("ab") as f:
        for row in rows:
            record = {"t": table_of(row), "r": row, "why": why(row)}
            f.write(orjson.dumps(record, default=repr) + b"\n")
    return path
