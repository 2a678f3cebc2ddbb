"""What the console reads from the log: a route's traffic over a window, its recent requests,
one request as stored with its feedback.

The log lives in two places: rows not yet sealed in this server's DuckDB, and sealed Parquet
segments under the shared store (every replica's). Only the hot rows are read on the logbook's
thread (the writer's: no file is opened there); the segments are read after, in a worker thread.
A seal may move rows in between: a sealed row is counted only when its id is not among the hot
rows taken, so a row is never seen twice and never missed (it is in the hot rows taken, or it
was sealed before they were taken, and its segment exists when the segments are listed).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb

from logbook.segments import open_segments
from logbook.writer import Logbook
from proxy.accounting import Pricer

# Shadow answers are logged as student rows for comparison, but nobody was served by them.
SHADOW = "coalesce(tags LIKE '%\"shadow\":true%', false)"
SERVED_BY = f"CASE WHEN {SHADOW} THEN served_by || ' (shadow)' ELSE served_by END"
LIST_COLUMNS = (
    "request_id, started_at, route, task, served_by, endpoint, status, outcome, latency_ms, "
    "stream, tags"
)
TRAFFIC_COLUMNS = (
    "request_id, route, started_at, served_by, outcome, status, latency_ms, cost_usd, "
    "prompt_tokens, completion_tokens, tags, response IS NOT NULL AS answered"
)
WINDOWS = {"hour": timedelta(hours=1), "day": timedelta(days=1)}
FILTERS = ("served_by", "outcome", "endpoint")
KEYS = {"requests": "request_id", "feedback": "feedback_id"}


@dataclass(frozen=True)
class LogQuery:
    """The recent requests of a route, newest first, with optional exact filters
    (`served_by` also takes `student`: any student, shadows left out)."""

    route: str
    served_by: str | None = None
    outcome: str | None = None
    endpoint: str | None = None
    limit: int = 50


async def snapshot(
    logbook: Logbook,
    shared: Path,
    columns: str,
    where: str,
    params: list[Any],
    table: str,
    route: str | None = None,
) -> duckdb.DuckDBPyConnection:
    """An in-memory connection whose table `log` holds the rows of `table` that match
    `where`, hot and sealed, each once (see the module doc)."""

    def hot_rows(con: duckdb.DuckDBPyConnection) -> Any:
        return con.sql(
            f"SELECT {columns} FROM {table} WHERE {where}", params=params
        ).to_arrow_table()

    hot = await logbook.run(hot_rows)  # the writer's thread: one small query, no file I/O
    key = KEYS[table]

    def sealed_too() -> duckdb.DuckDBPyConnection:
        con = open_segments(shared, route)
        con.register("hot", hot)
        con.execute(
            f"CREATE TEMP TABLE log AS SELECT {columns} FROM {table} WHERE {where} "
            f"AND {key} NOT IN (SELECT {key} FROM hot) UNION ALL BY NAME SELECT * FROM hot",
            params,
        )
        return con

    return await asyncio.to_thread(sealed_too)


async def traffic(
    logbook: Logbook, shared: Path, pricer: Pricer, window: str, now: datetime | None = None
) -> dict[str, Any]:
    """Per route and who served: requests, share, errors, p50/p95 latency, teacher cost paid
    and the teacher cost avoided by students, over the last `window` (hour or day)."""
    since = (now or datetime.now(UTC)).replace(tzinfo=None) - WINDOWS[window]
    con = await snapshot(logbook, shared, TRAFFIC_COLUMNS, "started_at >= ?", [since], "requests")
    return await asyncio.to_thread(_traffic, con, pricer, window)


def _traffic(con: duckdb.DuckDBPyConnection, pricer: Pricer, window: str) -> dict[str, Any]:
    rows = con.execute(
        f"SELECT route, {SERVED_BY} AS served_by, count(*) AS requests, "
        "count(*) FILTER (WHERE outcome <> 'ok') AS errors, "
        "quantile_cont(latency_ms, 0.5) AS p50_ms, quantile_cont(latency_ms, 0.95) AS p95_ms, "
        "sum(cost_usd) FILTER (WHERE status = 200) AS cost_usd, "
        "coalesce(sum(prompt_tokens) FILTER (WHERE status = 200 AND answered), 0) AS prompt, "
        "coalesce(sum(completion_tokens) FILTER (WHERE status = 200 AND answered), 0) "
        "AS completion FROM log GROUP BY ALL ORDER BY route, served_by"
    ).fetchall()
    routes: dict[str, dict[str, Any]] = {}
    for route, served_by, n, errors, p50, p95, cost, prompt, completion in rows:
        entry = routes.setdefault(
            route,
            {
                "requests": 0,
                "errors": 0,
                "cost_paid_usd": 0.0,
                "cost_avoided_usd": 0.0,
                "served_by": [],
            },
        )
        shadow = served_by.endswith("(shadow)")
        if not shadow:  # shadows are extra work, not traffic
            entry["requests"] += n
            entry["errors"] += errors
            if served_by == "teacher":
                entry["cost_paid_usd"] += float(cost or 0.0)
            else:  # what the teacher would have charged for the students' answers
                entry["cost_avoided_usd"] += pricer.cost(route, int(prompt), int(completion)) or 0.0
        entry["served_by"].append(
            {
                "served_by": served_by,
                "requests": n,
                "errors": errors,
                "shadow": shadow,
                "p50_ms": p50,
                "p95_ms": p95,
            }
        )
    for entry in routes.values():
        total = entry["requests"]
        entry["error_ratio"] = entry["errors"] / total if total else None
        for group in entry["served_by"]:
            group["share"] = None if group["shadow"] or not total else group["requests"] / total
    return {"window": window, "routes": routes}


async def recent(logbook: Logbook, shared: Path, query: LogQuery) -> list[dict[str, Any]]:
    """The route's latest requests matching the query's filters, newest first."""
    where, params = ["route = ?"], [query.route]
    for name in FILTERS:
        value = getattr(query, name)
        if value is None:
            continue
        if name == "served_by" and value == "student":
            where.append(f"served_by LIKE 'student:%' AND NOT {SHADOW}")
        elif name == "served_by" and value.endswith(" (shadow)"):
            where.append(f"served_by = ? AND {SHADOW}")
            params.append(value.removesuffix(" (shadow)"))
        else:
            where.append(f"{name} = ?" + (f" AND NOT {SHADOW}" if name == "served_by" else ""))
            params.append(value)
    con = await snapshot(
        logbook, shared, LIST_COLUMNS, " AND ".join(where), params, "requests", query.route
    )

    def fetch() -> list[dict[str, Any]]:
        result = con.execute(
            f"SELECT *, {SERVED_BY} AS shown_by FROM log ORDER BY started_at DESC, "
            "request_id DESC LIMIT ?",
            [query.limit],
        )
        return [_jsonable(r) for r in _records(result)]

    return await asyncio.to_thread(fetch)


async def one_request(logbook: Logbook, shared: Path, request_id: str) -> dict[str, Any] | None:
    """A logged request as stored (already redacted), with its feedback; None when unknown."""
    con = await snapshot(logbook, shared, "*", "request_id = ?", [request_id], "requests")
    found = await asyncio.to_thread(
        lambda: _records(con.execute("SELECT * FROM log ORDER BY seq DESC LIMIT 1"))
    )
    if not found:
        return None
    feedback = await snapshot(logbook, shared, "*", "request_id = ?", [request_id], "feedback")
    given = await asyncio.to_thread(
        lambda: _records(feedback.execute("SELECT * FROM log ORDER BY created_at"))
    )
    row = _jsonable(found[0])
    for key in ("request", "response", "tags", "correction"):
        row[key] = _parsed(row.get(key))
    return row | {
        "feedback": [_jsonable(f) | {"correction": _parsed(f.get("correction"))} for f in given]
    }


def _records(result: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    names = [d[0] for d in result.description or []]
    return [dict(zip(names, row, strict=True)) for row in result.fetchall()]


def _jsonable(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in record.items()}


def _parsed(text: Any) -> Any:
    if not isinstance(text, str):
        return text
    try:
        return json.loads(text)
    except ValueError:
        return text
