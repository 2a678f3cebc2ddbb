"""The route's sealed log as DuckDB reads it out of core, in batches, for the curation job.

Every query here runs under a memory limit with a spill folder (`Resources`), so the log may
be far larger than memory: DuckDB sorts, groups and joins on disk past the limit. Python only
ever sees one batch of rows at a time (`latest_batches`).

Repeated request ids (a replayed journal seals a row twice) count once: the row with the
highest `seq` wins, as in `curation.select`. Ids that repeat are few, so they are grouped apart
(`repeats`) and the scan leaves out every row of one that is not its latest.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from curation.select import COLUMNS, filters
from logbook.schema import ROW_SCHEMA_VERSION
from logbook.surfaces import PAIR_ENDPOINTS

Partition = tuple[str | None, str | None]  # (teacher, prompt fingerprint)


@dataclass(frozen=True)
class Resources:
    """How much of the machine one curation run may use; none of it changes the dataset."""

    memory_limit: str = "768MB"  # DuckDB's limit; past it, it spills to `temp_dir`
    threads: int = 2
    temp_dir: Path | None = None  # default: a folder beside the dataset versions
    batch_rows: int = 20_000  # rows handed to Python at once
    fit_rows: int = 50_000  # prompts a task's clusters are fitted on (balance)
    incremental: bool = True  # keep a watermark and read only new segments when it holds
    engine: Literal["duckdb", "ray"] = "duckdb"  # who runs the row-local stages
    workers: int = 1  # local processes running the row-local stages (duckdb engine)


DEFAULT_RESOURCES = Resources()


@dataclass(frozen=True)
class Scope:
    """Which logged rows a run reads: the route's, optionally one task's, since a time."""

    route: str
    task: str | None = None
    since: datetime | None = None
    table: str = "requests"  # the view rows are streamed from (incremental: the new segments)

    def where(self) -> tuple[str, list[Any]]:
        return filters(self.route, self.task, self.since)

    def key(self) -> str:
        return json.dumps([self.route, self.task, self.since.isoformat() if self.since else None])


def filters_arrow(batch: pa.Table, scope: Scope) -> pa.Array:
    """`Scope.where` as an Arrow mask, for engines that read the segments themselves."""
    mask = pc.equal(batch.column("route"), scope.route)
    if scope.task is not None:
        mask = pc.and_(mask, pc.equal(batch.column("task"), scope.task))
    if scope.since is not None:
        since = scope.since
        if since.tzinfo is not None:  # the log stores naive UTC
            since = since.astimezone(UTC).replace(tzinfo=None)
        mask = pc.and_(mask, pc.greater_equal(batch.column("started_at"), pa.scalar(since)))
    return pc.fill_null(mask, False)


def configure(con: duckdb.DuckDBPyConnection, resources: Resources, spill: Path) -> None:
    """Bound the connection's memory, and give it a folder to spill to past the bound."""
    spill.mkdir(parents=True, exist_ok=True)
    try:
        con.execute(f"SET memory_limit = '{_text(resources.memory_limit)}'")
    except duckdb.Error:
        raise ValueError(
            f"memory limit {resources.memory_limit!r} is not a size; use e.g. 512MB or 2GB."
        ) from None
    con.execute(f"SET temp_directory = '{_text(str(spill))}'")
    con.execute(f"SET threads = {int(resources.threads)}")
    con.execute("SET enable_progress_bar = false")  # the job reports its own progress
    # Results come back in any order unless asked: every query that needs one says ORDER BY.
    con.execute("SET preserve_insertion_order = false")


def set_memory(con: duckdb.DuckDBPyConnection, limit: str) -> None:
    """Change DuckDB's memory limit for the next stage (`configure` checked the size)."""
    con.execute(f"SET memory_limit = '{_text(limit)}'")


def count_rows(con: duckdb.DuckDBPyConnection, scope: Scope) -> tuple[int, int]:
    """(rows read, rows left out as older copies of a repeated id); creates `repeats`."""
    where, params = scope.where()
    con.execute(
        "CREATE OR REPLACE TEMP TABLE repeats AS SELECT request_id, max(seq) AS seq, "
        f"count(*) AS n FROM requests WHERE {where} GROUP BY request_id HAVING count(*) > 1",
        params,
    )
    total = con.execute(f"SELECT count(*) FROM requests WHERE {where}", params).fetchall()
    repeated = con.execute("SELECT coalesce(sum(n - 1), 0) FROM repeats").fetchall()
    return int(total[0][0]), int(repeated[0][0])


def latest_sql(scope: Scope, extra: str = "") -> tuple[str, list[Any]]:
    """The latest row of every request id in scope (after `count_rows` made `repeats`)."""
    where, params = scope.where()
    sql = (
        f"SELECT {COLUMNS}, seq FROM {scope.table} r WHERE {where} AND NOT EXISTS "
        "(SELECT 1 FROM repeats p WHERE p.request_id = r.request_id AND r.seq < p.seq)"
    )
    return sql + (f" AND {extra}" if extra else ""), params


def partitions(con: duckdb.DuckDBPyConnection, scope: Scope) -> dict[str | None, Partition]:
    """Per task, the (teacher, system prompt) of its newest teacher pair.

    The in-memory select stage looks at parsed pairs; here the newest readable teacher row
    decides, parsed or not (one malformed newest row is the only case where they differ)."""
    sql, params = latest_sql(scope, _readable())
    # arg_max is a hash aggregate: a window would sort every row of the log by time
    rows = con.execute(
        "SELECT task, arg_max([teacher, prompt_fingerprint], (started_at, request_id)) "
        f"FROM ({sql}) GROUP BY task",
        params,
    ).fetchall()
    return {task: (pair[0], pair[1]) for task, pair in rows}


def latest_batches(
    con: duckdb.DuckDBPyConnection, scope: Scope, batch_rows: int, extra: str = ""
) -> Iterator[pa.RecordBatch]:
    """The latest rows in scope, `batch_rows` at a time, in no particular order."""
    sql, params = latest_sql(scope, extra)
    reader = con.sql(sql, params=params).to_arrow_reader(batch_rows)
    yield from reader


def _readable() -> str:
    endpoints = ", ".join(f"'{_text(e)}'" for e in PAIR_ENDPOINTS)
    return (
        f"schema_version <= {ROW_SCHEMA_VERSION} AND served_by = 'teacher' "
        f"AND (endpoint IS NULL OR endpoint IN ({endpoints}))"
    )


def register(con: duckdb.DuckDBPyConnection, name: str, table: pa.Table) -> None:
    """A Python-side table (ids, limits, labels) as a DuckDB temp table `name`."""
    con.register(f"{name}_arrow", table)
    con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT * FROM {name}_arrow")
    con.unregister(f"{name}_arrow")


def _text(value: str) -> str:
    return value.replace("'", "''")
