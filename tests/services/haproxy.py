"""Debian's haproxy in front of replicas: a throwaway config on a free loopback port, health
checks on /readyz, run in the foreground and stopped by PID.

    with running_haproxy([8001, 8002]) as lb:   # skips (fails under CI=true) without haproxy
        url = lb.url                            # http://127.0.0.1:<port>
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

START_DEADLINE_S = 30.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def require_haproxy() -> str:
    """The haproxy binary, or a skip naming the package; under CI=true a failure."""
    found = shutil.which("haproxy") or next(
        (p for p in ("/usr/sbin/haproxy",) if os.access(p, os.X_OK)), None
    )
    if found is None:
        message = "haproxy is not installed: 'sudo apt-get install haproxy' runs this test"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found


def config_text(port: int, backends: list[int]) -> str:
    servers = "\n".join(
        f"    server r{i} 127.0.0.1:{p} check inter 200ms fall 1 rise 2"
        for i, p in enumerate(backends)
    )
    # A connection refused or closed before an answer is tried on another replica (a POST
    # whose answer had begun cannot be, and is the client's to retry).
    return f"""global
    maxconn 2000
defaults
    mode http
    timeout connect 1s
    timeout client 60s
    timeout server 60s
    retries 3
    option redispatch 1
    retry-on conn-failure empty-response
frontend apprentice
    bind 127.0.0.1:{port}
    default_backend replicas
backend replicas
    balance roundrobin
    option httpchk GET /readyz
{servers}
"""


@dataclass
class HAProxy:
    port: int
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextlib.contextmanager
def running_haproxy(backends: list[int]) -> Iterator[HAProxy]:
    binary = require_haproxy()
    with tempfile.TemporaryDirectory(prefix="apprentice-haproxy-") as tmp:
        port = free_port()
        cfg, log = Path(tmp) / "haproxy.cfg", Path(tmp) / "haproxy.log"
        cfg.write_text(config_text(port, backends))
        check = subprocess.run([binary, "-c", "-f", str(cfg)], capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr
        with log.open("wb") as out:
            proc = subprocess.Popen([binary, "-db", "-f", str(cfg)], stdout=out,
                                    stderr=subprocess.STDOUT)  # fmt: skip
        lb = HAProxy(port, proc, log)
        try:
            deadline = time.monotonic() + START_DEADLINE_S
            while True:
                try:
                    if httpx.get(f"{lb.url}/readyz", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert proc.poll() is None, log.read_text()
                assert time.monotonic() < deadline, "haproxy did not start: " + log.read_text()
                time.sleep(0.05)
            yield lb
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(10)
