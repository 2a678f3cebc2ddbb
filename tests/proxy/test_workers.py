"""`apprentice serve --workers 2`: two processes behind one port, each its own logbook shard,
one store and one control plane; a killed worker comes back; SIGTERM seals every shard."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import openai

from logbook.segments import open_segments
from tests.chaos.servers import Served, free_port, write_config
from tests.conftest import ADMIN_TOKEN, CLIENT_KEY
from tests.fakes.teacher import FakeTeacher

REQUESTS = 300
ADMIN = {"authorization": f"Bearer {ADMIN_TOKEN}"}


def cluster_view(url: str) -> dict[str, Any]:
    response = httpx.get(f"{url}/admin/cluster", headers=ADMIN, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def wait_for(what: str, check: Any, seconds: float = 60.0) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            got = check()
        except httpx.TransportError:
            got = None
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


async def send(base_url: str) -> list[str]:
    async def one(i: int) -> str:
        # A client per request: a new connection each, for the kernel to spread.
        async with openai.AsyncOpenAI(base_url=base_url, api_key=CLIENT_KEY, max_retries=0) as c:
            answer = await c.chat.completions.create(
                model="triage", messages=[{"role": "user", "content": f"request {i}"}]
            )
            return answer.choices[0].message.content or ""

    gate = asyncio.Semaphore(32)

    async def gated(i: int) -> str:
        async with gate:
            return await one(i)

    return await asyncio.gather(*(gated(i) for i in range(REQUESTS)))


def test_two_workers_share_a_port_a_store_and_a_control_plane(tmp_path: Path) -> None:
    port, data = free_port(), tmp_path / "data"
    with FakeTeacher(latency_s=0.02) as teacher:
        extra = "[cluster]\nlease_ttl_s = 2\npoll_interval_s = 0.2"
        config = write_config(tmp_path / "apprentice.toml", data, port, teacher.base_url, extra)
        served = Served(config, port, tmp_path / "serve.log", args=("--workers", "2")).start()
        url = f"http://127.0.0.1:{port}"
        try:
            # Both workers heartbeat into the one control plane; exactly one leads.
            view = wait_for("two workers", lambda: (v := cluster_view(url))
                            and len(v["replicas"]) == 2 and v["leader"] and v)  # fmt: skip
            names = sorted(r["replica"] for r in view["replicas"])
            assert [n.split(":")[2] for n in names] == ["w0", "w1"], names
            results = asyncio.run(send(f"{url}/v1"))
            assert results == [f"echo: request {i}" for i in range(REQUESTS)]
            # /metrics sums the workers, whichever of them answers the scrape.
            text = httpx.get(f"{url}/metrics", timeout=30).text
            ok = 'apprentice_requests_total{outcome="ok",route="triage",served_by="teacher"}'
            line = next(ln for ln in text.splitlines() if ln.startswith(ok))
            assert float(line.split()[-1]) == REQUESTS
            # A worker killed is started again (a new pid under the same name).
            victim = next(r for r in view["replicas"] if r["replica"].split(":")[2] == "w1")
            os.kill(int(victim["info"]["pid"]), signal.SIGKILL)
            wait_for("worker 1 back", lambda: any(
                r["replica"].split(":")[2] == "w1" and r["info"]["pid"] != victim["info"]["pid"]
                for r in cluster_view(url)["replicas"]))  # fmt: skip
        finally:
            rc = served.stop()
    assert rc == 0, served.log.read_text()[-4000:]
    # Both shards served, and each sealed its own rows into the one store (data_dir).
    assert (data / "apprentice.duckdb").exists() and (
        data / "workers" / "1" / "apprentice.duckdb"
    ).exists()
    con = open_segments(data, "triage")
    prompts = [json.loads(r)["messages"][-1]["content"]
               for (r,) in con.execute("SELECT request FROM requests").fetchall()]  # fmt: skip
    assert sorted(prompts) == sorted(f"request {i}" for i in range(REQUESTS))
    writers = {p.name.split("-")[1] for p in (data / "segments").rglob("part-*.parquet")}
    assert len(writers) == 2, writers
