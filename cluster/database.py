"""One connection to the control database: short transactions, one thread at a time, driver
errors translated once into `ControlUnavailable`, and a fresh connection after an outage.

Every call holds the lock for one transaction, so a ControlPlane can be shared by threads
(callers on an event loop use asyncio.to_thread). A driver error discards the connection; the
next call opens a new one, so a Postgres restart needs no apprentice restart. A call that
finds its connection dead before anything could have committed (the server restarted while
the connection idled) is run once more on a fresh connection.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

import psycopg

from cluster.sql import POSTGRES, SQLITE, Dialect, migrate
from cluster.urls import ControlUrl

T = TypeVar("T")
Row = tuple[Any, ...]
DRIVER_ERRORS = (sqlite3.Error, psycopg.Error)
BUSY_TIMEOUT_S = 5.0
CONNECT_TIMEOUT_S = 5
STATEMENT_TIMEOUT_MS = 5000


class ControlUnavailable(Exception):
    """The control database cannot be reached, or a statement failed for an operational
    reason (locked, timed out, connection lost). The message never holds a password."""


class _Connection(Protocol):
    def cursor(self) -> Any: ...
    def close(self) -> None: ...


class Transaction:
    """Statements of one transaction, written as in `cluster.sql` (`?`, `{now}`)."""

    def __init__(self, cursor: Any, dialect: Dialect) -> None:
        self._cursor = cursor
        self._dialect = dialect

    def execute(self, statement: str, params: Sequence[Any] = ()) -> list[Row]:
        """Run one statement; its rows (none for a statement that returns none)."""
        sql = self._dialect.sql(statement)
        # Without parameters, neither driver looks for placeholders (nor for a literal %).
        if params:
            self._cursor.execute(sql, tuple(params))
        else:
            self._cursor.execute(sql)
        if self._cursor.description is None:
            return []
        return list(self._cursor.fetchall())

    def executemany(self, statement: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            self._cursor.executemany(self._dialect.sql(statement), [tuple(r) for r in rows])

    @property
    def rowcount(self) -> int:
        """Rows the last statement changed."""
        return int(self._cursor.rowcount)


class Database:
    """The connection of one ControlPlane, opened on first use and after every failure."""

    def __init__(self, url: ControlUrl, application: str) -> None:
        self.url = url
        self.dialect = SQLITE if url.dialect == "sqlite" else POSTGRES
        self._application = application
        self._lock = threading.Lock()
        self._con: _Connection | None = None
        self._closed = False
        self._committing = False  # the current call has sent COMMIT: a failure is ambiguous

    def read(self, statement: str, params: Sequence[Any] = ()) -> list[Row]:
        """One statement on its own (its own snapshot; no transaction round trips)."""
        return self._run(lambda tx: tx.execute(statement, params), write=False)

    def write(self, work: Callable[[Transaction], T]) -> T:
        """`work` in one write transaction: committed whole, or not at all."""
        return self._run(work, write=True)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._discard()

    def _run(self, work: Callable[[Transaction], T], write: bool) -> T:
        with self._lock:
            if self._closed:
                raise ControlUnavailable(f"The control plane at {self.url.shown} is closed.")
            for attempt in (1, 2):
                reused = self._con is not None
                con = self._con if self._con is not None else self._connect()
                self._committing = False
                try:
                    return self._transaction(con, work, write)
                except DRIVER_ERRORS as exc:
                    dead = self._is_dead(con)
                    self._discard()
                    if attempt == 1 and reused and dead and not self._committing:
                        continue
                    raise self._unavailable(exc) from self._cause(exc)
            raise AssertionError("unreachable")

    def _transaction(self, con: _Connection, work: Callable[[Transaction], T], write: bool) -> T:
        cursor = con.cursor()
        tx = Transaction(cursor, self.dialect)
        if not write:
            # Reads are single statements in autocommit: a snapshot of their own.
            return work(tx)
        cursor.execute(self.dialect.begin_write)
        try:
            result = work(tx)
        except BaseException:
            # A broken connection cannot roll back; the server already has.
            with contextlib.suppress(*DRIVER_ERRORS):
                cursor.execute("ROLLBACK")
            raise
        # From here a failure is ambiguous (it may have committed): never retried.
        self._committing = True
        cursor.execute("COMMIT")
        return result

    def _connect(self) -> _Connection:
        try:
            con = self._open()
        except DRIVER_ERRORS as exc:
            raise self._unavailable(exc) from self._cause(exc)
        self._con = con
        try:
            self._transaction(con, lambda tx: migrate(tx.execute, self.dialect), True)
        except BaseException as exc:
            self._discard()
            if isinstance(exc, DRIVER_ERRORS):
                raise self._unavailable(exc) from self._cause(exc)
            raise
        return con

    def _open(self) -> _Connection:
        if self.url.dialect == "sqlite":
            con = sqlite3.connect(
                self.url.target,
                timeout=BUSY_TIMEOUT_S,
                isolation_level=None,  # autocommit: transactions are begun explicitly
                check_same_thread=False,  # the lock above serialises threads
            )
            try:
                # WAL: readers never block the writer, and processes on one host share it.
                _wal(con)
                # NORMAL in WAL mode survives any process crash; only power loss can drop the
                # last commits, which a control plane (leases, counters) can afford.
                con.execute("PRAGMA synchronous = NORMAL")
            except BaseException:
                con.close()
                raise
            return con
        pg = psycopg.connect(
            self.url.target,
            autocommit=True,
            connect_timeout=CONNECT_TIMEOUT_S,
            application_name=self._application,
        )
        try:
            # A hung server must not hang a leader renewing its lease.
            pg.execute(f"SET statement_timeout = {STATEMENT_TIMEOUT_MS}")
        except BaseException:
            pg.close()
            raise
        return pg

    def _is_dead(self, con: _Connection) -> bool:
        return isinstance(con, psycopg.Connection) and (con.closed or con.broken)

    def _discard(self) -> None:
        con, self._con = self._con, None
        if con is not None:
            with contextlib.suppress(*DRIVER_ERRORS):
                con.close()

    def _unavailable(self, exc: BaseException) -> ControlUnavailable:
        # One line: libpq's messages span several.
        detail = " ".join(self.url.scrub(f"{type(exc).__name__}: {exc}").split())
        hint = (
            "check that its directory exists and is writable, on a local disk"
            if self.url.dialect == "sqlite"
            else "check that PostgreSQL is running and reachable; the next call reconnects"
        )
        return ControlUnavailable(
            f"The control plane at {self.url.shown} is unavailable ({detail}); {hint}."
        )

    def _cause(self, exc: BaseException) -> BaseException | None:
        # Chain the driver's error only when it does not carry the password itself.
        text = f"{exc!s} {exc!r}"
        return None if any(s in text for s in self.url.secrets) else exc


def _wal(con: sqlite3.Connection) -> None:
    """Switch to WAL mode. The switch needs the file to itself and SQLite answers "database is
    locked" at once, without waiting on its busy timeout, while another connection is in it
    (replicas or workers starting together): try again until the busy timeout has passed."""
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    pause = 0.005
    while True:
        try:
            con.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() + pause > deadline:
                raise
        time.sleep(pause)  # back off: another connection holds the file for a moment
        pause = min(pause * 2, 0.1)
