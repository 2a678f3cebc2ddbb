"""`apprentice serve` that cannot start says why in one sentence on stderr, exit status 2, no
traceback: a config that is not UTF-8, a data_dir that is a file, PostgreSQL unreachable, a
second server on the same data_dir, a corrupt control-plane file, an unknown APPRENTICE_
variable, a config without routes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.chaos.servers import Served, free_port, write_config
from tests.conftest import ADMIN_TOKEN, CLIENT_KEY, TEACHER_KEY
from tests.fakes.teacher import FakeTeacher


def serve(config: Path, command: str = "serve", **env: str) -> subprocess.CompletedProcess[str]:
    environ = os.environ | {"TEST_CLIENT_KEY": CLIENT_KEY, "TEST_TEACHER_KEY": TEACHER_KEY,
                            "TEST_ADMIN_TOKEN": ADMIN_TOKEN} | env  # fmt: skip
    return subprocess.run(
        [sys.executable, "-m", "apprentice.cli", command, "--config", str(config)],
        env=environ, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def assert_one_sentence(done: subprocess.CompletedProcess[str], *words: str) -> None:
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    assert "Traceback" not in done.stderr and "startup failed" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])


def test_a_config_that_cannot_be_served_is_one_sentence_and_exit_2(tmp_path: Path) -> None:
    url = "http://127.0.0.1:9/v1"
    latin = tmp_path / "latin.toml"
    latin.write_bytes('data_dir = "donn\u00e9es"\n'.encode("latin-1"))
    assert_one_sentence(serve(latin), "is not UTF-8 text")

    a_file = tmp_path / "data"
    a_file.write_text("not a directory")
    config = write_config(tmp_path / "file.toml", a_file, free_port(), url)
    assert_one_sentence(serve(config), "is a file, not a directory")
    stats = serve(config, command="stats")  # read commands too: not an empty table
    assert_one_sentence(stats, "is a file, not a directory")

    pg = "postgresql://apprentice:long-password-1@127.0.0.1:9/control"
    config = write_config(tmp_path / "pg.toml", tmp_path / "d1", free_port(), url,
                          extra=f'[cluster]\ncontrol_url = "{pg}"')  # fmt: skip
    done = serve(config)
    assert_one_sentence(done, "control plane at postgresql://", "PostgreSQL")
    assert "long-password-1" not in done.stderr

    (tmp_path / "d2").mkdir()
    (tmp_path / "d2" / "control.sqlite3").write_bytes(os.urandom(4096))
    config = write_config(tmp_path / "corrupt.toml", tmp_path / "d2", free_port(), url)
    assert_one_sentence(serve(config), "control.sqlite3", "file is not a database")

    config = write_config(tmp_path / "ok.toml", tmp_path / "d3", free_port(), url)
    assert_one_sentence(serve(config, APPRENTICE_SERVER__PROT="9000"),
                        "APPRENTICE_SERVER__PROT is not a config override")  # fmt: skip

    empty = tmp_path / "empty.toml"
    empty.write_text(f'data_dir = "{tmp_path / "d4"}"\n')
    assert_one_sentence(serve(empty), "the config has no [[routes]] table")


def test_a_second_server_on_the_same_data_dir_is_refused_in_one_sentence(
    tmp_path: Path, teacher: FakeTeacher
) -> None:
    data_dir = tmp_path / "data"
    first = write_config(tmp_path / "a.toml", data_dir, free_port(), teacher.base_url)
    second = write_config(tmp_path / "b.toml", data_dir, free_port(), teacher.base_url)
    running = Served(first, int(first.read_text().split("port = ")[1].split()[0]),
                     tmp_path / "a.log").start()  # fmt: skip
    try:
        assert_one_sentence(serve(second), "is open in another process", "data_dir")
    finally:
        assert running.stop() in (0, -15)  # uvicorn re-raises SIGTERM once it has shut down
