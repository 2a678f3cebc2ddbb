"""The PostgreSQL starter: a skip where PostgreSQL is missing, a failure under CI."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.services import postgres


def _nowhere(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PG_BINDIR", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(postgres.glob, "glob", lambda pattern: [])


def test_missing_postgres_skips_outside_ci(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _nowhere(monkeypatch, tmp_path)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="apt-get install postgresql"):
        postgres.require_bindir()


def test_missing_postgres_fails_under_ci(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _nowhere(monkeypatch, tmp_path)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="PostgreSQL"):
        postgres.require_bindir()


def test_a_server_accepts_its_password_user_and_stops_by_pid() -> None:
    psycopg = pytest.importorskip("psycopg")
    with postgres.running_postgres() as server:
        pid = server.pid
        with psycopg.connect(server.url) as con:
            row = con.execute("SELECT current_user, current_database()").fetchone()
        assert row == ("apprentice", "apprentice")
        with pytest.raises(psycopg.OperationalError, match="password"):
            psycopg.connect(server.url.replace(server.password, "wrong"))
        root = server.root
    assert pid is not None and not Path(f"/proc/{pid}").exists()
    assert not root.exists()
