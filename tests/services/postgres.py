"""A throwaway PostgreSQL server: initdb in a temporary directory, `postgres` on a free
loopback port with its socket inside that directory, a password user and database, stopped by
PID. Debian's binaries live in /usr/lib/postgresql/<major>/bin (not on PATH).

    with running_postgres() as server:    # skips (fails under CI=true) without PostgreSQL
        url = server.url                  # postgresql://apprentice:<password>@127.0.0.1:port/apprentice
        other = server.create_database("t1")
        server.stop(); server.start()     # a restart on the same port and data

As root (CI containers) the server runs as the `postgres` OS user, since PostgreSQL refuses
to run as root; the directory is made in /tmp (not under pytest's tmp_path, which that user
cannot enter) and given to it.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

START_DEADLINE_S = 60.0
STOP_DEADLINE_S = 30.0
SUPERUSER = "postgres"
USER = "apprentice"
DATABASE = "apprentice"


def find_bindir() -> Path | None:
    """The directory holding `initdb` and `postgres`: $PG_BINDIR, then PATH, then Debian's
    newest /usr/lib/postgresql/<major>/bin; None when there is none."""
    candidates = [os.environ.get("PG_BINDIR", "")]
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(str(Path(on_path).parent))
    debian = glob.glob("/usr/lib/postgresql/*/bin")
    candidates += sorted(debian, key=lambda d: _major(d), reverse=True)
    for candidate in candidates:
        if candidate and all((Path(candidate) / b).is_file() for b in ("initdb", "postgres")):
            return Path(candidate)
    return None


def require_bindir() -> Path:
    """`find_bindir()`, or a skip saying what to install; under CI=true a failure, so CI
    cannot pass by skipping the PostgreSQL tests."""
    bindir = find_bindir()
    if bindir is None:
        message = (
            "PostgreSQL (initdb, postgres) not found: `sudo apt-get install postgresql` "
            "(Debian) runs this test"
        )
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(message)
        pytest.skip(message)
    return bindir


def _major(path: str) -> int:
    part = Path(path).parent.name
    return int(part) if part.isdigit() else 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresServer:
    """One PostgreSQL cluster in `root`: initdb'd by `init()`, run by `start()`/`stop()`."""

    def __init__(self, bindir: Path, root: Path, durable: bool = False) -> None:
        self.bindir = bindir
        self.root = root
        self.data = root / "data"
        self.sockets = root / "sockets"
        self.log_path = root / "postgres.log"
        self.port = free_port()
        self.password = secrets.token_urlsafe(18)
        # fsync off by default: tests need no durability across power loss, and it is faster.
        self.durable = durable
        self.process: subprocess.Popen[bytes] | None = None
        self._runas = _runas()

    @property
    def url(self) -> str:
        """The password user's URL for the default database, over TCP on loopback."""
        return self.url_for(DATABASE)

    def url_for(self, database: str) -> str:
        return f"postgresql://{USER}:{self.password}@127.0.0.1:{self.port}/{database}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def init(self) -> None:
        """initdb a new cluster (superuser over the socket only; TCP takes a password)."""
        self.sockets.mkdir(parents=True, exist_ok=True)
        if self._runas is not None:
            for path in (self.root, self.sockets):
                os.chown(path, self._runas.pw_uid, self._runas.pw_gid)
        args = [str(self.bindir / "initdb"), "-D", str(self.data), "-U", SUPERUSER,
                "--auth-local=trust", "--auth-host=scram-sha-256", "--encoding=UTF8",
                "--locale=C", "--no-sync"]  # fmt: skip
        done = subprocess.run(args, capture_output=True, **self._as_owner())
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed: {done.stderr.decode(errors='replace')}")

    def start(self) -> None:
        """Run `postgres` and wait (bounded) until it accepts connections."""
        if self.process is not None and self.process.poll() is None:
            raise RuntimeError("this PostgreSQL is already running")
        args = [str(self.bindir / "postgres"), "-D", str(self.data), "-p", str(self.port),
                "-c", "listen_addresses=127.0.0.1",
                "-c", f"unix_socket_directories={self.sockets}",
                "-c", "max_connections=60", "-c", "shared_buffers=16MB"]  # fmt: skip
        if not self.durable:
            args += ["-c", "fsync=off", "-c", "synchronous_commit=off"]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, **self._as_owner()
            )
        deadline = time.monotonic() + START_DEADLINE_S
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"postgres exited at start:\n{self.log_tail()}")
            try:
                self.superuser().close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(
                        f"postgres did not accept connections within {START_DEADLINE_S} s:\n"
                        f"{self.log_tail()}"
                    ) from None
                time.sleep(0.05)

    def stop(self) -> None:
        """Fast shutdown (SIGINT to the postmaster's PID), then wait for it to exit."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=STOP_DEADLINE_S)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGQUIT)  # immediate shutdown
            process.wait(timeout=STOP_DEADLINE_S)

    def superuser(self, database: str = "postgres") -> psycopg.Connection[Any]:
        """A superuser connection over the unix socket (trust), autocommit."""
        return psycopg.connect(
            host=str(self.sockets), port=self.port, user=SUPERUSER, dbname=database,
            autocommit=True, connect_timeout=2,
        )  # fmt: skip

    def create_user(self) -> None:
        with self.superuser() as con:
            con.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                    sql.Identifier(USER), sql.Literal(self.password)
                )
            )
        self.create_database(DATABASE)

    def create_database(self, name: str) -> str:
        """A new database owned by the password user; its URL."""
        with self.superuser() as con:
            statement = sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(name), sql.Identifier(USER)
            )
            # FILE_COPY (PostgreSQL 15+) copies the template's files: several times faster
            # than the default, which writes the whole template into the WAL.
            if con.info.server_version >= 150000:
                statement += sql.SQL(" STRATEGY FILE_COPY")
            con.execute(statement)
        return self.url_for(name)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def _as_owner(self) -> dict[str, Any]:
        if self._runas is None:
            return {"cwd": self.root}
        pw = self._runas
        return {"cwd": self.root, "user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}


def _runas() -> pwd.struct_passwd | None:
    """The `postgres` OS user when running as root (PostgreSQL refuses root), else None."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam("postgres")
    except KeyError:
        raise RuntimeError(
            "running as root, PostgreSQL needs the `postgres` OS user, which does not exist "
            "(Debian's postgresql package creates it)"
        ) from None


@contextlib.contextmanager
def running_postgres(durable: bool = False) -> Iterator[PostgresServer]:
    """A started server with the password user and database; stopped and removed after."""
    bindir = require_bindir()
    yield from _running(bindir, durable)


def _running(bindir: Path, durable: bool) -> Iterator[PostgresServer]:
    root = Path(tempfile.mkdtemp(prefix="apprentice-pg-"))
    server = PostgresServer(bindir, root, durable=durable)
    try:
        server.init()
        server.start()
        server.create_user()
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def postgres_at(bindir: Path, durable: bool = False) -> Iterator[PostgresServer]:
    """`running_postgres` for scripts (bench/): takes the bindir, never skips."""
    yield from _running(bindir, durable)
