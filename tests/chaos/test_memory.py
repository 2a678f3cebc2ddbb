"""RSS of `apprentice serve` stays flat under large request bodies once it has warmed up.

Each body is ~90 KB of ids no other body repeats (logs, documents and numbers are like that):
the drift window once kept every token of every prompt, and every token it ever saw at a count
of zero, so RSS climbed with each large body and never came down. The window here is 200
prompts, so warm-up (filling it) takes 250 requests; 600 more must not grow RSS past a bound.
Rows are sealed every 2 s: the hot table holds the rows of one seal interval (bounded, not a
leak), and a long interval would hide the measure under them.
The 10-minute soak with RSS over time is bench/soak_memory.py.
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import httpx
import orjson

from tests.chaos.servers import Served, free_port
from tests.conftest import CLIENT_KEY
from tests.fakes.teacher import FakeTeacher

WARM_UP, MEASURED, CLIENTS = 250, 600, 8
GROWTH_BOUND_MB = 120  # the leak grew RSS by ~1 GB over the same 600 requests


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def body(rng: random.Random) -> bytes:
    text = " ".join(f"id{rng.getrandbits(40):x}" for _ in range(7000))
    return orjson.dumps({"model": "triage", "messages": [{"role": "user", "content": text}]})


async def send(url: str, count: int, seed: int) -> None:
    rng = random.Random(seed)
    headers = {"authorization": f"Bearer {CLIENT_KEY}", "content-type": "application/json"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as http:

        async def client(n: int) -> None:
            for _ in range(n):
                response = await http.post("/v1/chat/completions", content=body(rng))
                assert response.status_code == 200, response.text

        await asyncio.gather(*(client(count // CLIENTS) for _ in range(CLIENTS)))


def test_rss_stays_flat_under_large_bodies(tmp_path: Path) -> None:
    with FakeTeacher(answer=lambda payload: "noted") as teacher:
        port = free_port()
        config = tmp_path / "apprentice.toml"
        config.write_text(f"""
data_dir = "{tmp_path / "data"}"
[server]
port = {port}
api_keys = ["env:TEST_CLIENT_KEY"]
[logbook]
seal_interval_s = 2
[[routes]]
name = "triage"
teacher = "openai/fake-teacher-1"
teacher_api_base = "{teacher.base_url}"
teacher_api_key = "env:TEST_TEACHER_KEY"
[routes.drift]
window_size = 200
""")
        served = Served(config, port, tmp_path / "serve.log").start()
        try:
            assert served.proc is not None
            asyncio.run(send(served.url, WARM_UP, seed=1))
            warm = rss_mb(served.proc.pid)
            asyncio.run(send(served.url, MEASURED, seed=2))
            after = rss_mb(served.proc.pid)
        finally:
            served.stop()
    print(f"RSS after warm-up {warm:.0f} MB, after {MEASURED} more {after:.0f} MB")
    assert after - warm < GROWTH_BOUND_MB, f"RSS {warm:.0f} -> {after:.0f} MB"
