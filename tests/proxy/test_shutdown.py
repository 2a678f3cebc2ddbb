"""SIGTERM with requests in flight: every acknowledged request is in the segments afterwards."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai

from logbook.segments import open_segments
from tests.conftest import CLIENT_KEY, TEACHER_KEY
from tests.fakes.teacher import FakeTeacher

REQUESTS = 500


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_config(path: Path, data_dir: Path, port: int, teacher_url: str) -> None:
    path.write_text(
        f"""
data_dir = "{data_dir}"
[server]
port = {port}
api_keys = ["env:TEST_CLIENT_KEY"]
[logbook]
seal_interval_s = 3600
[[routes]]
name = "triage"
teacher = "openai/fake-teacher-1"
teacher_api_base = "{teacher_url}"
teacher_api_key = "env:TEST_TEACHER_KEY"
"""
    )


def start_server(config: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = os.environ | {"TEST_CLIENT_KEY": CLIENT_KEY, "TEST_TEACHER_KEY": TEACHER_KEY}
    out = log.open("wb")  # a file, not a pipe nobody reads: a full pipe would stall the server
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "apprentice.cli",
            "serve",
            "--config",
            str(config),
            "--log-level",
            "info",
        ],
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    out.close()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(log.read_text())
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError("server did not become ready")


async def send_all(base_url: str, teacher: FakeTeacher, proc: subprocess.Popen[bytes]) -> list[str]:
    client = openai.AsyncOpenAI(base_url=base_url, api_key=CLIENT_KEY, max_retries=0, timeout=60)

    async def one(i: int) -> str:
        answer = await client.chat.completions.create(
            model="triage",
            messages=[{"role": "user", "content": f"request {i}"}],
            stream=i % 2 == 0,
        )
        if i % 2 == 0:
            return "".join([c.choices[0].delta.content or "" async for c in answer if c.choices])
        return answer.choices[0].message.content or ""

    tasks = [asyncio.create_task(one(i)) for i in range(REQUESTS)]
    # SIGTERM once every request has reached the teacher, i.e. all are in flight.
    while len(teacher.received) < REQUESTS:
        await asyncio.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    results = await asyncio.gather(*tasks)
    await client.close()
    return results


def test_sigterm_with_500_requests_in_flight_loses_none(tmp_path: Path) -> None:
    port = free_port()
    with FakeTeacher(latency_s=0.5) as teacher:
        config = tmp_path / "apprentice.toml"
        write_config(config, tmp_path / "data", port, teacher.base_url)
        log = tmp_path / "server.log"
        proc = start_server(config, port, log)
        try:
            results = asyncio.run(send_all(f"http://127.0.0.1:{port}/v1", teacher, proc))
            # uvicorn re-raises the signal once it has shut down cleanly
            assert proc.wait(60) in (0, -signal.SIGTERM)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert results == [f"echo: request {i}" for i in range(REQUESTS)]
    con = open_segments(tmp_path / "data")
    count, distinct, ok = con.execute(
        "SELECT count(*), count(DISTINCT request_id), count(*) FILTER (outcome = 'ok') "
        "FROM requests"
    ).fetchone() or (0, 0, 0)
    left = sorted(p.name for p in (tmp_path / "data" / "journal").glob("*"))
    assert (count, distinct, ok) == (REQUESTS, REQUESTS, REQUESTS), (left, log.read_text()[-8000:])
