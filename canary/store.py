"""Canary snapshots and transitions in the logbook's DuckDB (tables from migration 2).

The server is the only process that opens the logbook, so it hands its connection in; these
functions never open or close one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

import duckdb

from canary.controller import Check, Transition


def save_snapshot(con: duckdb.DuckDBPyConnection, route: str, snapshot: Mapping[str, Any]) -> None:
    """Store `route`'s snapshot, replacing the previous one."""
    con.execute(
        "INSERT INTO canary_state VALUES (?, ?, ?) ON CONFLICT (route) DO UPDATE "
        "SET snapshot = excluded.snapshot, updated_at = excluded.updated_at",
        [route, json.dumps(snapshot), _utc(datetime.now(UTC).timestamp())],
    )


def load_snapshots(con: duckdb.DuckDBPyConnection) -> dict[str, dict[str, Any]]:
    """Every stored snapshot, by route."""
    rows = con.execute("SELECT route, snapshot FROM canary_state ORDER BY route").fetchall()
    return {route: json.loads(snapshot) for route, snapshot in rows}


def append_transition(con: duckdb.DuckDBPyConnection, route: str, transition: Transition) -> None:
    """Record one transition of `route`."""
    t = transition
    checks = json.dumps([asdict(c) for c in t.checks])
    con.execute(
        "INSERT INTO canary_transitions (route, made_at, from_state, to_state, version, step, "
        "weight, reason, detail, checks) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [route, _utc(t.at), t.from_state, t.to_state, t.version, t.step, t.weight, t.reason,
         t.detail, checks],
    )  # fmt: skip


def history(
    con: duckdb.DuckDBPyConnection, route: str, limit: int | None = None
) -> list[Transition]:
    """`route`'s transitions, oldest first; the last `limit` of them when given."""
    rows = con.execute(
        "SELECT made_at, from_state, to_state, version, step, weight, reason, detail, checks "
        "FROM canary_transitions WHERE route = ? ORDER BY seq DESC LIMIT ?",
        [route, limit if limit is not None else 2**62],
    ).fetchall()
    return [_transition(row) for row in reversed(rows)]


def _transition(row: tuple[Any, ...]) -> Transition:
    at, from_state, to_state, version, step, weight, reason, detail, checks = row
    return Transition(
        at=at.replace(tzinfo=UTC).timestamp(),
        from_state=from_state,
        to_state=to_state,
        version=version,
        step=step,
        weight=weight,
        reason=reason,
        detail=detail,
        checks=tuple(Check(**c) for c in json.loads(checks)),
    )


def _utc(epoch_s: float) -> datetime:
    # The logbook's TIMESTAMP columns hold naive UTC, whatever the server's time zone.
    return datetime.fromtimestamp(epoch_s, UTC).replace(tzinfo=None)
