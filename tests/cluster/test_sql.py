"""The control plane's schema: created once by frozen migrations, on both dialects."""

from __future__ import annotations

import sqlite3
import threading
from typing import Any

import psycopg
import pytest

from cluster import sql
from cluster.control import ControlUnavailable, open_control
from cluster.sql import MIGRATIONS, POSTGRES, SQLITE
from cluster.urls import parse_control_url

TABLES = {"control_schema", "canary_snapshots", "canary_transitions", "traffic", "leases",
          "replicas", "owned_objects"}  # fmt: skip


def raw(url: str, statement: str) -> list[tuple[Any, ...]]:
    """`statement` on the database itself, past the control plane."""
    parsed = parse_control_url(url)
    if parsed.dialect == "sqlite":
        with sqlite3.connect(parsed.target) as con:
            return con.execute(statement).fetchall()
    with psycopg.connect(url, autocommit=True) as pg:
        cursor = pg.execute(statement)  # type: ignore[arg-type]
        return cursor.fetchall() if cursor.description else []


def tables(url: str) -> set[str]:
    if parse_control_url(url).dialect == "sqlite":
        rows = raw(url, "SELECT name FROM sqlite_master WHERE type = 'table'")
    else:
        rows = raw(url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    return {r[0] for r in rows} - {"sqlite_sequence"}


def test_a_new_database_gets_every_migration_once(control_url: str) -> None:
    open_control(control_url, "r1").close()
    assert tables(control_url) == TABLES
    recorded = raw(control_url, "SELECT version, name FROM control_schema ORDER BY version")
    assert recorded == [(n, name) for n, (name, _) in enumerate(MIGRATIONS, start=1)]

    control = open_control(control_url, "r2")  # a second start applies nothing again
    control.write_snapshot("triage", None, {"kept": True}, [])
    control.close()
    open_control(control_url, "r3").close()
    assert raw(control_url, "SELECT count(*) FROM control_schema") == [(len(MIGRATIONS),)]
    assert raw(control_url, "SELECT route FROM canary_snapshots") == [("triage",)]


def test_replicas_starting_together_migrate_once_without_error(control_url: str) -> None:
    errors: list[BaseException] = []
    barrier = threading.Barrier(6)

    def start() -> None:
        try:
            barrier.wait(10)
            open_control(control_url, "r").close()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert raw(control_url, "SELECT count(*) FROM control_schema") == [(len(MIGRATIONS),)]


def test_a_database_from_a_newer_apprentice_is_refused(control_url: str) -> None:
    open_control(control_url, "r1").close()
    raw(control_url, "INSERT INTO control_schema VALUES (99, 'from the future', 0)")
    with pytest.raises(RuntimeError, match="newer apprentice"):
        open_control(control_url, "r1")


def test_a_failing_migration_leaves_nothing_behind(
    control_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = (("half of a change", ("CREATE TABLE half (a TEXT)", "NOT SQL AT ALL")),)
    monkeypatch.setattr(sql, "MIGRATIONS", MIGRATIONS + broken)
    with pytest.raises(ControlUnavailable):
        open_control(control_url, "r1")
    # Migrations run in one transaction with their record: neither the first half nor the
    # earlier migrations' record of a partial start survive.
    assert "half" not in tables(control_url)
    assert "canary_snapshots" not in tables(control_url)


def test_statements_are_written_once_for_both_dialects() -> None:
    statement = "SELECT ? FROM t WHERE at > {now} - ?"
    assert SQLITE.sql(statement) == (
        "SELECT ? FROM t WHERE at > ((julianday('now') - 2440587.5) * 86400.0) - ?"
    )
    assert POSTGRES.sql(statement) == (
        "SELECT %s FROM t WHERE at > extract(epoch from clock_timestamp())::double precision - %s"
    )
    assert "{serial}" not in POSTGRES.sql(MIGRATIONS[0][1][1])
