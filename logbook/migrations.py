"""The logbook's tables, created by numbered migrations recorded in `schema_migrations`.

A migration is applied once, in order, inside a transaction; its number and name are recorded
so a later version of apprentice knows what an old file holds. Every migration is a frozen
literal: a file made by an earlier release must upgrade to exactly what a fresh file holds, so
a shipped migration never changes. A new column is a new migration (`ALTER TABLE ... ADD`)
and a field in `logbook.schema`; `tests/logbook/test_migrations.py` checks the two agree.
"""

from __future__ import annotations

import duckdb

from logbook.transaction import transaction

Migration = tuple[str, tuple[str, ...]]

MIGRATIONS: tuple[Migration, ...] = (
    (
        "requests, feedback, segments",
        (
            "CREATE SEQUENCE requests_seq START 1",
            "CREATE SEQUENCE feedback_seq START 1",
            """CREATE TABLE requests (
  seq BIGINT NOT NULL,
  request_id VARCHAR NOT NULL,
  schema_version INTEGER NOT NULL,
  started_at TIMESTAMP NOT NULL,
  ended_at TIMESTAMP NOT NULL,
  route VARCHAR NOT NULL,
  task VARCHAR,
  session_hash VARCHAR,
  served_by VARCHAR NOT NULL,
  teacher VARCHAR,
  upstream_model VARCHAR,
  prompt_fingerprint VARCHAR,
  request VARCHAR NOT NULL,
  response VARCHAR,
  status INTEGER NOT NULL,
  outcome VARCHAR NOT NULL,
  error VARCHAR,
  finish_reason VARCHAR,
  truncated BOOLEAN NOT NULL,
  latency_ms DOUBLE,
  ttft_ms DOUBLE,
  prompt_tokens INTEGER,
  completion_tokens INTEGER,
  total_tokens INTEGER,
  usage_estimated BOOLEAN NOT NULL,
  cost_usd DOUBLE,
  stream BOOLEAN NOT NULL,
  tags VARCHAR,
  key_id VARCHAR,
  teacher_logprobs VARCHAR,
  shadow_pair_id VARCHAR
)""",
            """CREATE TABLE feedback (
  seq BIGINT NOT NULL,
  feedback_id VARCHAR NOT NULL,
  request_id VARCHAR NOT NULL,
  route VARCHAR NOT NULL,
  created_at TIMESTAMP NOT NULL,
  score DOUBLE NOT NULL,
  label VARCHAR,
  comment VARCHAR,
  correction VARCHAR
)""",
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
            # One JSON snapshot per route (canary/controller.py), replaced at each transition.
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
    (
        "logbook identity; the key id of every logged request",
        (
            # Segment names carry the identity, so a new logbook beside old segments (or
            # another replica) never writes over a sealed file. One row, made once.
            "CREATE TABLE logbook_identity (id VARCHAR NOT NULL, created_at TIMESTAMP NOT NULL)",
            "INSERT INTO logbook_identity "
            "SELECT replace(CAST(gen_random_uuid() AS VARCHAR), '-', ''), now()::TIMESTAMP",
            # Feedback is accepted only from the key that made the request.
            "ALTER TABLE request_ids ADD COLUMN key_id VARCHAR",
        ),
    ),
    (
        "the API surface of each request",
        # chat/completions, responses, messages, embeddings, ...; older rows are chat.
        ("ALTER TABLE requests ADD COLUMN endpoint VARCHAR",),
    ),
)


def schema_version(con: duckdb.DuckDBPyConnection) -> int:
    """The number of the last migration this file holds (0 for a new file)."""
    con.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations "
        "(version INTEGER PRIMARY KEY, name VARCHAR NOT NULL, applied_at TIMESTAMP NOT NULL)"
    )
    row = con.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchone()
    return int(row[0]) if row else 0


def migrate(con: duckdb.DuckDBPyConnection, upto: int | None = None) -> list[int]:
    """Apply the migrations this file lacks (up to `upto`, default all); return the numbers."""
    current = schema_version(con)
    if current > len(MIGRATIONS):
        raise RuntimeError(
            f"The logbook was written by a newer apprentice (schema {current}, this one knows "
            f"{len(MIGRATIONS)}); upgrade apprentice."
        )
    last = len(MIGRATIONS) if upto is None else upto
    applied = []
    for number, (name, statements) in enumerate(MIGRATIONS[:last], start=1):
        if number <= current:
            continue
        with transaction(con):
            for statement in statements:
                con.execute(statement)
            con.execute(
                "INSERT INTO schema_migrations VALUES (?, ?, now()::TIMESTAMP)", [number, name]
            )
        applied.append(number)
    return applied
