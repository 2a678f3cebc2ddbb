"""The logbook's migrations: frozen literals that agree with the row declarations, and a file
made by an older release upgraded in place."""

from __future__ import annotations

from pathlib import Path

import duckdb

from logbook.migrations import MIGRATIONS, migrate, schema_version
from logbook.schema import TABLE_COLUMNS
from logbook.segments import open_segments
from logbook.settings import LogbookSettings
from logbook.writer import Logbook
from monitoring.metrics import Metrics
from tests.logbook.rows import Row


def table_columns(con: duckdb.DuckDBPyConnection, table: str) -> list[tuple[str, str, bool]]:
    rows = con.execute(
        "SELECT column_name, data_type, is_nullable FROM information_schema.columns "
        "WHERE table_name = ? ORDER BY ordinal_position",
        [table],
    ).fetchall()
    return [(name, kind, nullable == "YES") for name, kind, nullable in rows]


def declared(table: str) -> list[tuple[str, str, bool]]:
    return [("seq", "BIGINT", False)] + [
        (c.name, c.sql.split()[0], "NOT NULL" not in c.sql) for c in TABLE_COLUMNS[table]
    ]


def test_the_migrated_tables_are_what_the_rows_declare(tmp_path: Path) -> None:
    # A field added to RequestRow or FeedbackRow without its migration fails here.
    con = duckdb.connect(str(tmp_path / "fresh.duckdb"))
    assert migrate(con) == list(range(1, len(MIGRATIONS) + 1))
    for table in TABLE_COLUMNS:
        assert table_columns(con, table) == declared(table), table


def test_migration_1_is_a_frozen_literal() -> None:
    # Migration 1 shipped: its text names the columns itself and must never change (a later
    # ALTER TABLE ADD would fail on a fresh file if it did).
    name, statements = MIGRATIONS[0]
    assert name == "requests, feedback, segments"
    requests = next(s for s in statements if s.startswith("CREATE TABLE requests"))
    assert "shadow_pair_id VARCHAR\n)" in requests and requests.count("\n") == 32
    assert all(isinstance(s, str) for _, group in MIGRATIONS for s in group)


async def test_a_logbook_made_by_migration_1_alone_is_upgraded_and_keeps_its_rows(
    tmp_path: Path,
) -> None:
    path = tmp_path / "apprentice.duckdb"
    old = duckdb.connect(str(path))
    assert migrate(old, upto=1) == [1]
    old.execute(
        "INSERT INTO requests SELECT nextval('requests_seq'), * FROM (SELECT "
        "'old-1', 1, TIMESTAMP '2026-11-23 12:00:00', TIMESTAMP '2026-11-23 12:00:01', 'r', "
        "NULL, NULL, 'teacher', 't', NULL, NULL, '{}', NULL, 200, 'ok', NULL, 'stop', false, "
        "1.0, 1.0, 1, 1, 2, false, NULL, false, NULL, NULL, NULL, NULL)"
    )
    old.execute("INSERT INTO request_ids VALUES ('old-1', 'r')")
    assert schema_version(old) == 1
    old.close()

    logbook = Logbook(tmp_path, LogbookSettings(), Metrics())
    await logbook.open(background=False)
    assert await logbook.run(schema_version) == len(MIGRATIONS)
    assert await logbook.run(lambda con: table_columns(con, "requests")) == declared("requests")
    assert await logbook.owner_of("old-1") == ("r", None)  # logged before key ids were kept
    assert len(logbook.identity) == 32  # an old file gets its identity when upgraded
    logbook.submit(Row("new-1"))
    await logbook.close()
    con = open_segments(tmp_path)
    ids = [r[0] for r in con.execute("SELECT request_id FROM requests ORDER BY seq").fetchall()]
    assert ids == ["old-1", "new-1"]


def test_a_file_from_a_newer_release_is_refused(tmp_path: Path) -> None:
    con = duckdb.connect(str(tmp_path / "future.duckdb"))
    migrate(con)
    con.execute("INSERT INTO schema_migrations VALUES (999, 'from the future', now())")
    try:
        migrate(con)
    except RuntimeError as exc:
        assert "newer apprentice" in str(exc) and "upgrade apprentice" in str(exc)
    else:
        raise AssertionError("a newer schema was accepted")
