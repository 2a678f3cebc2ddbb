"""Outages: ControlUnavailable (never a driver error, never the password), and a control
plane that comes back by itself when its PostgreSQL does."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from cluster.control import ControlPlane, ControlUnavailable, open_control
from tests.services.postgres import PostgresServer, running_postgres


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    """A server of this test's own, free to stop and restart."""
    with running_postgres() as server:
        yield server


def _messages(exc: BaseException) -> str:
    """Everything a log line with a traceback would print of `exc` and its chain."""
    out = []
    seen: BaseException | None = exc
    while seen is not None:
        out += [str(seen), repr(seen)]
        seen = seen.__cause__ or (None if seen.__suppress_context__ else seen.__context__)
    return "\n".join(out)


def test_a_stopped_postgres_raises_control_unavailable_without_the_password(
    own_postgres: PostgresServer,
) -> None:
    control = open_control(own_postgres.url, "r1")
    assert control.write_snapshot("triage", None, {"n": 1}, [{"to": "shadow"}]) == 1
    own_postgres.stop()
    for call in (control.versions, lambda: control.acquire_lease("leader", "r1", 5),
                 lambda: control.publish_traffic("r1", None, {"triage": {"n": 1}})):  # fmt: skip
        with pytest.raises(ControlUnavailable) as caught:
            call()
        assert not isinstance(caught.value, psycopg.Error)
        text = _messages(caught.value)
        assert own_postgres.password not in text
        assert "***" in str(caught.value) and "PostgreSQL is running" in str(caught.value)
    assert own_postgres.password not in repr(control) and "***" in repr(control)

    own_postgres.start()
    # The first call after the restart reconnects; nothing needs reopening.
    assert control.versions() == {"triage": 1}
    assert control.write_snapshot("triage", 1, {"n": 2}, [{"to": "canary"}]) == 2
    assert [t["to"] for t in control.history("triage")] == ["shadow", "canary"]
    control.close()


def test_a_restart_while_idle_costs_no_failed_call(own_postgres: PostgresServer) -> None:
    control = open_control(own_postgres.url, "r1")
    assert control.acquire_lease("leader", "r1", 30)
    own_postgres.stop()
    own_postgres.start()
    # The idle connection died with the server; the call notices before anything could
    # have committed, and runs once more on a new connection.
    assert control.acquire_lease("leader", "r1", 30)
    own_postgres.stop()
    own_postgres.start()
    assert control.lease("leader") is not None
    control.close()


def test_opening_against_a_stopped_postgres_or_a_wrong_password(
    own_postgres: PostgresServer,
) -> None:
    wrong = own_postgres.url.replace(own_postgres.password, "not-the-password-0000")
    with pytest.raises(ControlUnavailable) as caught:
        open_control(wrong, "r1")
    text = _messages(caught.value)
    assert "not-the-password-0000" not in text and own_postgres.password not in text
    assert "password authentication failed" in str(caught.value)

    own_postgres.stop()
    with pytest.raises(ControlUnavailable) as caught:
        open_control(own_postgres.url, "r1")
    assert own_postgres.password not in _messages(caught.value)


def test_a_password_given_as_a_parameter_is_masked_too(own_postgres: PostgresServer) -> None:
    base = f"postgresql://apprentice@127.0.0.1:{own_postgres.port}/apprentice"
    control = open_control(f"{base}?password={own_postgres.password}", "r1")
    assert control.versions() == {}
    assert own_postgres.password not in repr(control) + control.url
    own_postgres.stop()
    with pytest.raises(ControlUnavailable) as caught:
        control.versions()
    assert own_postgres.password not in _messages(caught.value)
    control.close()


def test_an_sqlite_file_that_cannot_be_opened(tmp_path: Path) -> None:
    with pytest.raises(ControlUnavailable, match="directory exists"):
        open_control(f"sqlite://{tmp_path}/missing/control.sqlite3", "r1")


def test_a_closed_control_plane_refuses_calls(control: ControlPlane) -> None:
    control.close()
    with pytest.raises(ControlUnavailable, match="closed"):
        control.versions()


def test_threads_share_one_control_plane(control: ControlPlane) -> None:
    errors: list[BaseException] = []

    def publish(n: int) -> None:
        try:
            for i in range(25):
                control.publish_traffic(f"t{n}", None, {"triage": {"i": i}})
                control.versions()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=publish, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    rows = control.traffic("triage", since=0)
    assert len(rows) == 150 and {r["replica"] for r in rows} == {f"t{n}" for n in range(6)}
