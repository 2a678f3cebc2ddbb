"""Stage 1, select: the route's logged rows, parsed into pairs, one teacher version per task.

Rows come from sealed segments only (the server's hot DuckDB file is never opened), so the job
runs while the server does. A request id sealed twice (a replayed journal) counts once: the row
with the highest `seq` wins. Rows the job cannot read (a newer schema version, a request that
is not chat JSON) are skipped and listed by id, never fatal.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import duckdb
import pyarrow as pa

from curation.pairs import MalformedRow, Pair, parse_pair
from curation.report import StageReport
from curation.settings import CurationSettings
from logbook.schema import ROW_SCHEMA_VERSION
from logbook.surfaces import PAIR_ENDPOINTS

BATCH_ROWS = 10_000
COLUMNS = (
    "request_id, schema_version, started_at, task, session_hash, served_by, teacher, "
    "prompt_fingerprint, request, response, status, outcome, finish_reason, truncated, "
    "prompt_tokens, completion_tokens, teacher_logprobs, endpoint"
)


@dataclass
class Selection:
    pairs: list[Pair]
    report: StageReport
    skipped: list[dict[str, str]] = field(default_factory=list)  # request_id, reason


def read_rows(
    con: duckdb.DuckDBPyConnection, route: str, task: str | None, since: datetime | None
) -> tuple[int, pa.Table]:
    """(rows read, latest row per request id), oldest first."""
    where, params = filters(route, task, since)
    total = con.execute(f"SELECT count(*) FROM requests WHERE {where}", params).fetchall()[0]
    data = con.sql(
        f"SELECT {COLUMNS} FROM requests WHERE {where} "
        "QUALIFY row_number() OVER (PARTITION BY request_id ORDER BY seq DESC) = 1 "
        "ORDER BY started_at, request_id",
        params=params,
    ).to_arrow_table()
    return (int(total[0]) if total else 0), data


def filters(route: str, task: str | None, since: datetime | None) -> tuple[str, list[Any]]:
    clauses, params = ["route = ?"], [route]
    if task is not None:
        clauses.append("task = ?")
        params.append(task)
    if since is not None:
        if since.tzinfo is not None:  # the log stores naive UTC
            since = since.astimezone(UTC).replace(tzinfo=None)
        clauses.append("started_at >= ?")
        params.append(since)  # type: ignore[arg-type]
    return " AND ".join(clauses), params


def select_pairs(rows_read: int, table: pa.Table, settings: CurationSettings) -> Selection:
    """Parse the rows into pairs; drop students' answers and older teacher partitions."""
    dropped: Counter[str] = Counter()
    unique = table.num_rows
    if rows_read > unique:
        dropped["repeated_id"] = rows_read - unique
    pairs: list[Pair] = []
    skipped: list[dict[str, str]] = []
    for row in _records(table):
        reason = unreadable_reason(row)
        if reason is None:
            try:
                pairs.append(to_pair(row))
                continue
            except MalformedRow:
                reason = "malformed_row"
        if reason in ("not_teacher", "not_a_pair"):
            dropped[reason] += 1
        else:
            skipped.append({"request_id": str(row["request_id"]), "reason": reason})
            dropped[reason] += 1
    if settings.one_teacher_per_task:
        pairs = _latest_partition(pairs, dropped)
    report = StageReport.of("select", rows_read, len(pairs), dropped, Counter())
    return Selection(pairs, report, skipped)


def _records(table: pa.Table) -> Iterator[dict[str, Any]]:
    """Rows as dicts, converted a batch at a time: Python objects for all rows at once would
    double the job's peak memory (the raw JSON is dropped once parsed)."""
    for batch in table.to_batches(max_chunksize=BATCH_ROWS):
        yield from batch.to_pylist()


def unreadable_reason(row: dict[str, Any]) -> str | None:
    if row["schema_version"] is None or row["schema_version"] > ROW_SCHEMA_VERSION:
        return "unknown_schema"
    if row["served_by"] != "teacher":
        return "not_teacher"  # a student's answer is not a teacher label
    if row["endpoint"] not in (None, *PAIR_ENDPOINTS):
        return "not_a_pair"  # embeddings, files, ...: logged, but nothing to learn
    return None


def to_pair(row: dict[str, Any]) -> Pair:
    messages, tools, response_format, answer = parse_pair(
        row["endpoint"], row["request"], row["response"]
    )
    return Pair(
        request_id=row["request_id"],
        task=row["task"],
        session_hash=row["session_hash"],
        teacher=row["teacher"],
        prompt_fingerprint=row["prompt_fingerprint"],
        started_at=row["started_at"],
        messages=messages,
        tools=tools,
        response_format=response_format,
        answer=answer,
        teacher_logprobs=row["teacher_logprobs"],
        outcome=row["outcome"],
        status=int(row["status"]),
        finish_reason=row["finish_reason"],
        truncated=bool(row["truncated"]),
        prompt_tokens=row["prompt_tokens"],
        completion_tokens=row["completion_tokens"],
    )


def _latest_partition(pairs: list[Pair], dropped: Counter[str]) -> list[Pair]:
    """Per task, keep the (teacher, system prompt) of its newest row; pairs are oldest first."""
    latest: dict[str | None, tuple[str | None, str | None]] = {}
    for pair in pairs:
        latest[pair.task] = (pair.teacher, pair.prompt_fingerprint)
    kept = [p for p in pairs if latest[p.task] == (p.teacher, p.prompt_fingerprint)]
    if len(kept) < len(pairs):
        dropped["older_teacher_or_prompt"] += len(pairs) - len(kept)
    return kept
