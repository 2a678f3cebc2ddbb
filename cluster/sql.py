"""The control plane's tables, and the little that differs between SQLite and PostgreSQL.

Statements are written once, with `?` parameters and `{now}` for the database's clock (epoch
seconds as a double); `Dialect.sql` turns them into what a driver takes. The clock is the
database's, never a replica's, so leases and ages mean the same on every host.

The tables are created by numbered migrations recorded in `control_schema`. A migration is
applied once, in order, inside a transaction (the migration lock held, so replicas starting at
the same moment apply it once); every migration is a frozen literal, and so are the dialects'
substitutions in it: a database made by an earlier release must upgrade to exactly what a fresh
one holds, so a shipped migration never changes. A change is a new migration.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

Migration = tuple[str, tuple[str, ...]]
Execute = Callable[[str, Sequence[Any]], list[tuple[Any, ...]]]


@dataclass(frozen=True)
class Dialect:
    """What differs between the two databases, as SQL text."""

    name: str
    now: str  # the database's clock in epoch seconds, as a double
    begin_write: str  # starts a transaction that already holds the write lock it will need
    serial: str  # a column type: an increasing integer key the database assigns
    migration_lock: str | None  # serialises concurrent migrations (None: begin_write does)
    placeholder: str
    _cache: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    def sql(self, statement: str) -> str:
        """`statement` in this dialect: `{now}`, `{serial}` and `?` replaced."""
        out = self._cache.get(statement)
        if out is None:
            out = statement.replace("{now}", self.now).replace("{serial}", self.serial)
            out = out.replace("?", self.placeholder)
            self._cache[statement] = out
        return out


SQLITE = Dialect(
    name="sqlite",
    now="((julianday('now') - 2440587.5) * 86400.0)",
    # IMMEDIATE takes the write lock up front (waiting up to busy_timeout): a deferred
    # transaction that reads first and writes later can fail at once with SQLITE_BUSY.
    begin_write="BEGIN IMMEDIATE",
    serial="INTEGER PRIMARY KEY AUTOINCREMENT",
    migration_lock=None,
    placeholder="?",
)

POSTGRES = Dialect(
    name="postgres",
    # clock_timestamp(), not now(): now() is the transaction's start, frozen while it waits
    # for a lock, which would let a lease be judged by a stale clock.
    now="extract(epoch from clock_timestamp())::double precision",
    begin_write="BEGIN",
    serial="BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
    # CREATE TABLE IF NOT EXISTS races with itself on Postgres; a transaction-scoped advisory
    # lock (any constant: this one spells "apprctl") makes concurrent starts take turns.
    migration_lock="SELECT pg_advisory_xact_lock(6368880843396204)",
    placeholder="%s",
)

MIGRATIONS: tuple[Migration, ...] = (
    (
        "canary snapshots and transitions, traffic counters, leases, replicas",
        (
            # One JSON snapshot per route; `version` grows by one at each write, which is
            # what a compare-and-set compares and what replicas poll.
            """CREATE TABLE canary_snapshots (
                 route TEXT PRIMARY KEY, version BIGINT NOT NULL, snapshot TEXT NOT NULL,
                 updated_at DOUBLE PRECISION NOT NULL)""",
            # Every transition ever made, in the order the snapshot writes committed.
            """CREATE TABLE canary_transitions (
                 seq {serial}, route TEXT NOT NULL, version BIGINT NOT NULL,
                 made_at DOUBLE PRECISION NOT NULL, transition TEXT NOT NULL)""",
            "CREATE INDEX canary_transitions_by_route ON canary_transitions (route, seq)",
            # One row per replica, route and interval: a JSON dict of counts and histogram
            # buckets. The leader sums them; old rows are pruned.
            """CREATE TABLE traffic (
                 seq {serial}, replica TEXT NOT NULL, route TEXT NOT NULL,
                 at DOUBLE PRECISION NOT NULL, counters TEXT NOT NULL)""",
            "CREATE INDEX traffic_by_route ON traffic (route, at)",
            "CREATE INDEX traffic_by_time ON traffic (at)",
            """CREATE TABLE leases (
                 name TEXT PRIMARY KEY, holder TEXT NOT NULL,
                 expires_at DOUBLE PRECISION NOT NULL, acquired_at DOUBLE PRECISION NOT NULL)""",
            """CREATE TABLE replicas (
                 replica TEXT PRIMARY KEY, info TEXT NOT NULL,
                 seen_at DOUBLE PRECISION NOT NULL)""",
        ),
    ),
    (
        "the client key that created each stored response and file",
        # cluster/objects.py: another key is answered 404 for them, on every replica.
        (
            """CREATE TABLE owned_objects (
                 object_id TEXT PRIMARY KEY, kind TEXT NOT NULL, key_id TEXT NOT NULL,
                 created_at DOUBLE PRECISION NOT NULL)""",
            "CREATE INDEX owned_objects_by_key ON owned_objects (key_id, kind)",
        ),
    ),
)

_SCHEMA_TABLE = """CREATE TABLE IF NOT EXISTS control_schema (
  version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at DOUBLE PRECISION NOT NULL)"""


def migrate(execute: Execute, dialect: Dialect, upto: int | None = None) -> list[int]:
    """Apply the migrations the database lacks (up to `upto`, default all); return their
    numbers. Runs inside the caller's write transaction; `execute` takes statements as
    written above (`Dialect.sql` applied by it)."""
    if dialect.migration_lock is not None:
        execute(dialect.migration_lock, ())
    execute(_SCHEMA_TABLE, ())
    current = int(execute("SELECT coalesce(max(version), 0) FROM control_schema", ())[0][0])
    if current > len(MIGRATIONS):
        raise RuntimeError(
            f"The control plane was written by a newer apprentice (schema {current}, this one "
            f"knows {len(MIGRATIONS)}); upgrade apprentice on every replica."
        )
    last = len(MIGRATIONS) if upto is None else upto
    applied = []
    for number, (name, statements) in enumerate(MIGRATIONS[:last], start=1):
        if number <= current:
            continue
        for statement in statements:
            execute(statement, ())
        execute("INSERT INTO control_schema VALUES (?, ?, {now})", (number, name))
        applied.append(number)
    return applied
