"""`apprentice serve` as a real child process, for the tests that kill it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import ADMIN_TOKEN, CLIENT_KEY, TEACHER_KEY


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Served:
    """One `apprentice serve --config` child; the config file is written by the caller.
    `args`: more of serve's options (`--workers 2`); `env`: more variables for its config."""

    def __init__(
        self,
        config: Path,
        port: int,
        log: Path,
        args: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        self.config, self.port, self.log = config, port, log
        self.args, self.env = args, dict(env or {})
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, deadline_s: float = 60) -> Served:
        env = os.environ | {"TEST_CLIENT_KEY": CLIENT_KEY, "TEST_TEACHER_KEY": TEACHER_KEY,
                            "TEST_ADMIN_TOKEN": ADMIN_TOKEN} | self.env  # fmt: skip
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "apprentice.cli", "serve", "--config", str(self.config),
                 "--log-level", "info", *self.args],
                env=env, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"serve exited: {self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        self.kill()
        raise RuntimeError("serve did not start")

    def kill(self) -> None:
        """SIGKILL: nothing runs after it, no flush, no seal."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)

    def stop(self) -> int:
        """SIGTERM and wait: the graceful stop (drain, flush, seal)."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(60)
        return int(self.proc.returncode)


def write_config(path: Path, data_dir: Path, port: int, teacher_url: str, extra: str = "") -> Path:
    path.write_text(
        f"""
data_dir = "{data_dir}"
[server]
port = {port}
api_keys = ["env:TEST_CLIENT_KEY"]
admin_token = "env:TEST_ADMIN_TOKEN"
[logbook]
seal_interval_s = 3600
{extra}
[[routes]]
name = "triage"
teacher = "openai/fake-teacher-1"
teacher_api_base = "{teacher_url}"
teacher_api_key = "env:TEST_TEACHER_KEY"
input_cost_per_mtok = 1.0
output_cost_per_mtok = 2.0
"""
    )
    return path
