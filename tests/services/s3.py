"""An S3-compatible server on loopback: moto in server mode, one process per use.

`S3Server` starts `python -m moto.server` on 127.0.0.1 and a free port, waits for it with a
bounded poll, and stops it by its PID. `restart()` brings it back on the same port (moto keeps
objects in memory, so a restarted server is empty: tests create their bucket again). Any test
module may use the `s3` fixture by importing it from here.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ACCESS_KEY = "AKIATESTSTOREKEY0001"
SECRET_KEY = "test-secret-key-never-logged-0123456789"
START_TIMEOUT_S = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class S3Server:
    """moto's S3 on 127.0.0.1:`port`; `log` receives its output."""

    def __init__(self, log: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> S3Server:
        env = os.environ | {"MOTO_ALLOW_NONEXISTENT_REGION": "true"}
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"moto exited with {self.proc.returncode}: see {self.log}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"moto did not listen on {self.port} within {START_TIMEOUT_S}s")

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.proc = None

    def restart(self) -> S3Server:
        self.stop()
        return self.start()

    def client(self) -> Any:
        """A boto3 client for setting up and checking buckets."""
        import boto3

        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name="us-east-1",
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
        )

    def create_bucket(self, name: str) -> str:
        self.client().create_bucket(Bucket=name)
        return name

    def store_config(self, bucket: str, prefix: str = "shared") -> dict[str, str]:
        """A `[store]` section for this server, credentials as env: references."""
        return {
            "url": f"s3://{bucket}/{prefix}",
            "endpoint_url": self.endpoint_url,
            "access_key_id": "env:TEST_S3_KEY",
            "secret_access_key": "env:TEST_S3_SECRET",
        }


STORE_ENV = {"TEST_S3_KEY": ACCESS_KEY, "TEST_S3_SECRET": SECRET_KEY}


@pytest.fixture
def s3(tmp_path: Path) -> Iterator[S3Server]:
    server = S3Server(tmp_path / "moto.log").start()
    try:
        yield server
    finally:
        server.stop()
