"""The logbook's tables, created by numbered migrations recorded in `schema_migrations`.

A migration is applied once, in order, inside a transaction; its number and name are recorded
so a later version of apprentice knows what an old file holds. Add new migrations at the end;
never edit one that has shipped.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import pyarrow as pa

# Bumped when the meaning of a logged row changes; stored in each row so readers can skip
# rows from a future version they do not understand.
ROW_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Column:
    name: str
    sql: str
    arrow: pa.DataType
    doc: str


# The log row (DESIGN.md, "The log row"). `seq` is assigned by the database at insert.
REQUEST_COLUMNS: tuple[Column, ...] = (
    Column("request_id", "VARCHAR NOT NULL", pa.string(), "id returned in x-apprentice-request-id"),
    Column("schema_version", "INTEGER NOT NULL", pa.int32(), "ROW_SCHEMA_VERSION when written"),
    Column("started_at", "TIMESTAMP NOT NULL", pa.timestamp("us"), "request received (UTC)"),
    Column("ended_at", "TIMESTAMP NOT NULL", pa.timestamp("us"), "last byte sent (UTC)"),
    Column("route", "VARCHAR NOT NULL", pa.string(), "route name"),
    Column("task", "VARCHAR", pa.string(), "x-apprentice-task"),
    Column("session_hash", "VARCHAR", pa.string(), "hash of x-apprentice-session or `user`"),
    Column("served_by", "VARCHAR NOT NULL", pa.string(), "teacher or student:<version>"),
    Column("teacher", "VARCHAR", pa.string(), "the route's teacher model string"),
    Column("upstream_model", "VARCHAR", pa.string(), "model named in the upstream response"),
    Column("prompt_fingerprint", "VARCHAR", pa.string(), "hash of the system prompt(s)"),
    Column("request", "VARCHAR NOT NULL", pa.string(), "request body as JSON"),
    Column("response", "VARCHAR", pa.string(), "response as JSON (streams reassembled)"),
    Column("status", "INTEGER NOT NULL", pa.int32(), "HTTP status sent to the client"),
    Column("outcome", "VARCHAR NOT NULL", pa.string(), "ok, client_error, upstream_error, ..."),
    Column("error", "VARCHAR", pa.string(), "error message, if any"),
    Column("finish_reason", "VARCHAR", pa.string(), "first choice's finish_reason"),
    Column("truncated", "BOOLEAN NOT NULL", pa.bool_(), "stream ended before [DONE]"),
    Column("latency_ms", "DOUBLE", pa.float64(), "request received to last byte"),
    Column("ttft_ms", "DOUBLE", pa.float64(), "request received to first answer byte"),
    Column("prompt_tokens", "INTEGER", pa.int32(), "usage.prompt_tokens"),
    Column("completion_tokens", "INTEGER", pa.int32(), "usage.completion_tokens"),
    Column("total_tokens", "INTEGER", pa.int32(), "usage.total_tokens"),
    Column("usage_estimated", "BOOLEAN NOT NULL", pa.bool_(), "tokens counted locally"),
    Column("cost_usd", "DOUBLE", pa.float64(), "teacher cost from the price table"),
    Column("stream", "BOOLEAN NOT NULL", pa.bool_(), "client asked for SSE"),
    Column("tags", "VARCHAR", pa.string(), "JSON object of extra tags"),
    Column("key_id", "VARCHAR", pa.string(), "id of the client key (never the key)"),
    Column("teacher_logprobs", "VARCHAR", pa.string(), "teacher top logprobs as JSON"),
    Column("shadow_pair_id", "VARCHAR", pa.string(), "shadow comparison this row belongs to"),
)

FEEDBACK_COLUMNS: tuple[Column, ...] = (
    Column("feedback_id", "VARCHAR NOT NULL", pa.string(), "id of this feedback"),
    Column("request_id", "VARCHAR NOT NULL", pa.string(), "the request it is about"),
    Column("route", "VARCHAR NOT NULL", pa.string(), "the request's route"),
    Column("created_at", "TIMESTAMP NOT NULL", pa.timestamp("us"), "when it was given (UTC)"),
    Column("score", "DOUBLE NOT NULL", pa.float64(), "-1 (bad) .. 1 (good)"),
    Column("label", "VARCHAR", pa.string(), "free label"),
    Column("comment", "VARCHAR", pa.string(), "free comment"),
    Column("correction", "VARCHAR", pa.string(), "corrected answer as JSON, if given"),
)

TABLE_COLUMNS = {"requests": REQUEST_COLUMNS, "feedback": FEEDBACK_COLUMNS}
TIME_COLUMN = {"requests": "started_at", "feedback": "created_at"}


def arrow_schema(table: str) -> pa.Schema:
    """The Arrow schema of a table's rows as handed to the writer (without `seq`)."""
    return pa.schema([pa.field(c.name, c.arrow) for c in TABLE_COLUMNS[table]])


def _create(table: str) -> str:
    cols = ",\n  ".join(f"{c.name} {c.sql}" for c in TABLE_COLUMNS[table])
    return f"CREATE TABLE {table} (\n  seq BIGINT NOT NULL,\n  {cols}\n)"


MIGRATIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "requests, feedback, segments",
        (
            "CREATE SEQUENCE requests_seq START 1",
            "CREATE SEQUENCE feedback_seq START 1",
            _create("requests"),
            _create("feedback"),
            # Every request id ever logged, kept after its row is sealed, so feedback can be
            # checked against it without reading segments.
            "CREATE TABLE request_ids (request_id VARCHAR NOT NULL, route VARCHAR NOT NULL)",
            """CREATE TABLE segments (
                 path VARCHAR PRIMARY KEY, tbl VARCHAR NOT NULL, route VARCHAR NOT NULL,
                 date DATE NOT NULL, first_seq BIGINT NOT NULL, last_seq BIGINT NOT NULL,
                 rows BIGINT NOT NULL, sealed_at TIMESTAMP NOT NULL)""",
        ),
    ),
    (
        "canary state and transitions",
        (
            # One JSON snapshot per route (monitoring/canary.py), replaced at each transition.
            """CREATE TABLE canary_state (
                 route VARCHAR PRIMARY KEY, snapshot VARCHAR NOT NULL,
                 updated_at TIMESTAMP NOT NULL)""",
            # Every transition ever made; snapshots keep only the recent ones. `seq` orders
            # transitions made within the same clock tick.
            "CREATE SEQUENCE canary_transitions_seq START 1",
            """CREATE TABLE canary_transitions (
                 seq BIGINT NOT NULL DEFAULT nextval('canary_transitions_seq'),
                 route VARCHAR NOT NULL, made_at TIMESTAMP NOT NULL, from_state VARCHAR NOT NULL,
                 to_state VARCHAR NOT NULL, version VARCHAR, step INTEGER,
                 weight INTEGER NOT NULL, reason VARCHAR NOT NULL, detail VARCHAR NOT NULL,
                 checks VARCHAR NOT NULL)""",
        ),
    ),
)


def migrate(con: duckdb.DuckDBPyConnection) -> list[int]:
    """Apply the migrations this file lacks; return the numbers applied."""
    con.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations "
        "(version INTEGER PRIMARY KEY, name VARCHAR NOT NULL, applied_at TIMESTAMP NOT NULL)"
    )
    row = con.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchone()
    current = int(row[0]) if row else 0
    if current > len(MIGRATIONS):
        raise RuntimeError(
            f"The logbook was written by a newer apprentice (schema {current}, this one knows "
            f"{len(MIGRATIONS)}); upgrade apprentice."
        )
    applied = []
    for number, (name, statements) in enumerate(MIGRATIONS, start=1):
        if number <= current:
            continue
        con.execute("BEGIN TRANSACTION")
        for statement in statements:
            con.execute(statement)
        con.execute("INSERT INTO schema_migrations VALUES (?, ?, now()::TIMESTAMP)", [number, name])
        con.execute("COMMIT")
        applied.append(number)
    return applied
