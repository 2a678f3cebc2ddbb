"""SIGKILL in the middle of a burst, right after start: no answer a client received is lost.

The writer is told to commit only once a minute, so nothing of the burst is in the database
when the process dies: every acknowledged row must come back from the journal.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
import httpx
import orjson

from logbook.segments import open_segments
from tests.chaos.servers import Served, free_port, write_config
from tests.conftest import CLIENT_KEY
from tests.fakes.teacher import FakeTeacher

REQUESTS, CLIENTS, KILL_AFTER = 300, 24, 150


async def burst(url: str, kill: Callable[[], None]) -> list[str]:
    """Send REQUESTS requests (a third streamed); SIGKILL the server after KILL_AFTER
    answers; return the ids of the answers that arrived whole."""
    acknowledged: list[str] = []
    killed = asyncio.Event()
    todo = iter(range(REQUESTS))
    headers = {"authorization": f"Bearer {CLIENT_KEY}", "content-type": "application/json"}

    async def one(session: aiohttp.ClientSession, i: int) -> None:
        stream = i % 3 == 0
        body = {"model": "triage", "stream": stream,
                "messages": [{"role": "user", "content": f"burst {i}"}]}  # fmt: skip
        try:
            async with session.post(f"{url}/v1/chat/completions", data=orjson.dumps(body),
                                    headers=headers) as response:  # fmt: skip
                data = await response.read()
                whole = b"data: [DONE]" in data if stream else b'"choices"' in data
                if response.status == 200 and whole:
                    acknowledged.append(response.headers["x-apprentice-request-id"])
        except (TimeoutError, aiohttp.ClientError):
            return  # in flight when the server died: never acknowledged
        if len(acknowledged) >= KILL_AFTER and not killed.is_set():
            killed.set()
            kill()

    async def worker(session: aiohttp.ClientSession) -> None:
        for i in todo:
            if killed.is_set():
                return
            await one(session, i)

    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        await asyncio.gather(*(worker(session) for _ in range(CLIENTS)))
    return acknowledged


def test_sigkill_mid_burst_loses_no_acknowledged_row(tmp_path: Path) -> None:
    data_dir, log = tmp_path / "data", tmp_path / "serve.log"
    with FakeTeacher(split_seed=3) as teacher:
        port = free_port()
        config = write_config(
            tmp_path / "apprentice.toml", data_dir, port, teacher.base_url,
            extra="flush_interval_ms = 60000",
        )  # fmt: skip
        served = Served(config, port, log).start()
        acknowledged = asyncio.run(burst(served.url, served.kill))
        assert served.proc is not None and served.proc.returncode == -9
        assert len(acknowledged) >= KILL_AFTER
        assert not (data_dir / "segments").exists()  # nothing had been sealed
        again = Served(config, port, log).start()
        assert again.stop() in (0, -15)  # uvicorn re-raises SIGTERM once it has shut down
    con = open_segments(data_dir)
    logged = {r[0] for r in con.execute("SELECT request_id FROM requests").fetchall()}
    missing = set(acknowledged) - logged
    assert not missing, f"{len(missing)} acknowledged rows lost: {sorted(missing)[:5]}"
    duplicates = con.execute(
        "SELECT count(*) - count(DISTINCT request_id) FROM requests"
    ).fetchone()
    assert duplicates == (0,)
    assert "recovered" in log.read_text() and "had not committed" in log.read_text()


def test_committed_rows_lost_with_a_cut_write_ahead_log_are_recovered_and_reported(
    tmp_path: Path,
) -> None:
    data_dir, log = tmp_path / "data", tmp_path / "serve.log"
    with FakeTeacher() as teacher:
        port = free_port()
        config = write_config(tmp_path / "apprentice.toml", data_dir, port, teacher.base_url,
                              extra="flush_interval_ms = 20")  # fmt: skip
        served = Served(config, port, log).start()
        answered = asyncio.run(send(served.url, 60))
        metric = 'apprentice_capture_rows_written_total{table="requests"} 60.0'
        deadline = time.monotonic() + 30
        while metric not in httpx.get(f"{served.url}/metrics").text:  # all 60 committed
            assert time.monotonic() < deadline, "rows were not committed"
            time.sleep(0.05)
        served.kill()
        wal = data_dir / "apprentice.duckdb.wal"
        assert wal.exists() and wal.stat().st_size > 4000
        with wal.open("r+b") as f:  # power lost before the disk kept the last writes
            f.truncate(wal.stat().st_size // 2)
        again = Served(config, port, log).start()
        again.stop()
    logged = {r[0] for r in open_segments(data_dir).execute(
        "SELECT request_id FROM requests").fetchall()}  # fmt: skip
    assert set(answered) <= logged
    assert "had lost" in log.read_text() and "committed rows" in log.read_text()


async def send(url: str, n: int) -> list[str]:
    headers = {"authorization": f"Bearer {CLIENT_KEY}"}
    async with aiohttp.ClientSession() as session:
        ids = []
        for i in range(n):
            body = {"model": "triage", "messages": [{"role": "user", "content": f"wal {i}"}]}
            async with session.post(f"{url}/v1/chat/completions", json=body,
                                    headers=headers) as response:  # fmt: skip
                assert response.status == 200
                ids.append(response.headers["x-apprentice-request-id"])
        return ids
