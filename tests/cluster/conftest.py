"""The control plane under test, on both backends: an SQLite file in tmp_path, and a fresh
database on one PostgreSQL server the session starts (tests/services/postgres.py)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from cluster.control import ControlPlane, open_control
from tests.services.postgres import PostgresServer, running_postgres

_databases = itertools.count(1)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL for the session; each test gets its own database on it."""
    with running_postgres() as server:
        yield server


@pytest.fixture(params=["sqlite", "postgres"])
def control_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL of an empty control database, once per backend."""
    if request.param == "sqlite":
        return f"sqlite://{tmp_path}/control.sqlite3"
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return server.create_database(f"control_{next(_databases)}")


@pytest.fixture
def control(control_url: str) -> Iterator[ControlPlane]:
    plane = open_control(control_url, "r1")
    yield plane
    plane.close()
