"""The log's rows, declared once: each field of `RequestRow` and `FeedbackRow` is a column.

The writer builds its Arrow batches from these declarations, the migrations' test checks the
tables against them, and the segment readers give empty views their columns. Adding a field
means adding a migration (`logbook.migrations`) that adds the column; a test fails otherwise.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

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


def _column(sql: str, arrow: pa.DataType, doc: str) -> Any:
    return field(metadata={"sql": sql, "arrow": arrow, "doc": doc})


_STR, _INT, _FLOAT, _BOOL, _TIME = (
    pa.string(),
    pa.int32(),
    pa.float64(),
    pa.bool_(),
    pa.timestamp("us"),
)


@dataclass(slots=True, kw_only=True)
class RequestRow:
    """One proxied call (DESIGN.md, "The log row"). `seq` is assigned by the database."""

    request_id: str = _column("VARCHAR NOT NULL", _STR, "id returned in x-apprentice-request-id")
    schema_version: int = _column("INTEGER NOT NULL", _INT, "ROW_SCHEMA_VERSION when written")
    started_at: datetime = _column("TIMESTAMP NOT NULL", _TIME, "request received (UTC)")
    ended_at: datetime = _column("TIMESTAMP NOT NULL", _TIME, "last byte sent (UTC)")
    route: str = _column("VARCHAR NOT NULL", _STR, "route name")
    task: str | None = _column("VARCHAR", _STR, "x-apprentice-task")
    session_hash: str | None = _column("VARCHAR", _STR, "hash of x-apprentice-session or `user`")
    served_by: str = _column("VARCHAR NOT NULL", _STR, "teacher or student:<version>")
    teacher: str | None = _column("VARCHAR", _STR, "the route's teacher model string")
    upstream_model: str | None = _column("VARCHAR", _STR, "model named in the upstream response")
    prompt_fingerprint: str | None = _column("VARCHAR", _STR, "hash of the system prompt(s)")
    request: str = _column("VARCHAR NOT NULL", _STR, "request body as JSON")
    response: str | None = _column("VARCHAR", _STR, "response as JSON (streams reassembled)")
    status: int = _column("INTEGER NOT NULL", _INT, "HTTP status sent to the client")
    outcome: str = _column("VARCHAR NOT NULL", _STR, "ok, client_error, upstream_error, ...")
    error: str | None = _column("VARCHAR", _STR, "error message, if any")
    finish_reason: str | None = _column("VARCHAR", _STR, "first choice's finish_reason")
    truncated: bool = _column("BOOLEAN NOT NULL", _BOOL, "stream ended before [DONE]")
    latency_ms: float | None = _column("DOUBLE", _FLOAT, "request received to last byte")
    ttft_ms: float | None = _column("DOUBLE", _FLOAT, "request received to first answer byte")
    prompt_tokens: int | None = _column("INTEGER", _INT, "usage.prompt_tokens")
    completion_tokens: int | None = _column("INTEGER", _INT, "usage.completion_tokens")
    total_tokens: int | None = _column("INTEGER", _INT, "usage.total_tokens")
    usage_estimated: bool = _column("BOOLEAN NOT NULL", _BOOL, "tokens counted locally")
    cost_usd: float | None = _column("DOUBLE", _FLOAT, "teacher cost from the price table")
    stream: bool = _column("BOOLEAN NOT NULL", _BOOL, "client asked for SSE")
    tags: str | None = _column("VARCHAR", _STR, "JSON object of extra tags")
    key_id: str | None = _column("VARCHAR", _STR, "id of the client key (never the key)")
    teacher_logprobs: str | None = _column("VARCHAR", _STR, "teacher top logprobs as JSON")
    shadow_pair_id: str | None = _column("VARCHAR", _STR, "shadow comparison this row is in")
    endpoint: str | None = _column(
        "VARCHAR", _STR, "API surface: chat/completions, responses, messages, embeddings, ..."
    )


@dataclass(slots=True, kw_only=True)
class FeedbackRow:
    """A client's verdict on one logged answer (`POST /v1/feedback`)."""

    feedback_id: str = _column("VARCHAR NOT NULL", _STR, "id of this feedback")
    request_id: str = _column("VARCHAR NOT NULL", _STR, "the request it is about")
    route: str = _column("VARCHAR NOT NULL", _STR, "the request's route")
    created_at: datetime = _column("TIMESTAMP NOT NULL", _TIME, "when it was given (UTC)")
    score: float = _column("DOUBLE NOT NULL", _FLOAT, "-1 (bad) .. 1 (good)")
    label: str | None = _column("VARCHAR", _STR, "free label")
    comment: str | None = _column("VARCHAR", _STR, "free comment")
    correction: str | None = _column("VARCHAR", _STR, "corrected answer as JSON, if given")


Row = RequestRow | FeedbackRow
ROW_TYPES: dict[str, type[RequestRow] | type[FeedbackRow]] = {
    "requests": RequestRow,
    "feedback": FeedbackRow,
}
TIME_COLUMN = {"requests": "started_at", "feedback": "created_at"}


def _columns(row_type: type[Any]) -> tuple[Column, ...]:
    return tuple(
        Column(f.name, f.metadata["sql"], f.metadata["arrow"], f.metadata["doc"])
        for f in dataclasses.fields(row_type)
    )


# Table name -> its columns in declaration order (without `seq`, which the database assigns).
TABLE_COLUMNS: dict[str, tuple[Column, ...]] = {t: _columns(r) for t, r in ROW_TYPES.items()}


def table_of(row: Row) -> str:
    return "requests" if isinstance(row, RequestRow) else "feedback"


def arrow_schema(table: str) -> pa.Schema:
    """The Arrow schema of a table's rows as handed to the writer (without `seq`)."""
    return pa.schema([pa.field(c.name, c.arrow) for c in TABLE_COLUMNS[table]])


def arrow_batch(table: str, rows: list[Any]) -> pa.Table:
    """Rows of one table as an Arrow table, built column by column (no per-row dicts)."""
    columns = TABLE_COLUMNS[table]
    return pa.table(
        [pa.array([getattr(r, c.name) for r in rows], type=c.arrow) for c in columns],
        schema=arrow_schema(table),
    )


def row_from_dict(table: str, data: dict[str, Any]) -> Row:
    """A row from its JSON form (journal files): timestamps come back from ISO text.

    Unknown keys are an error, so a file written by another schema is noticed, not guessed."""
    values = dict(data)
    for column in TABLE_COLUMNS[table]:
        value = values.get(column.name)
        if pa.types.is_timestamp(column.arrow) and isinstance(value, str):
            values[column.name] = datetime.fromisoformat(value).replace(tzinfo=None)
    return ROW_TYPES[table](**values)
