"""A teacher that closes its connections after answering (announced or not, or just as the
proxy reuses one): a request sent on a connection closed before any byte of its answer is sent
again on a new connection, so no client sees a 502, even with the route's retries off."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from tests.conftest import CLIENT_KEY, RunningProxy, proxy_config
from tests.fakes.teacher import FakeTeacher

AUTH = {"authorization": f"Bearer {CLIENT_KEY}"}


async def burst(base_url: str, clients: int, rounds: int) -> list[int]:
    async with httpx.AsyncClient(base_url=base_url, headers=AUTH, timeout=30) as http:

        async def one(i: int) -> int:
            body = {"model": "triage", "messages": [{"role": "user", "content": f"q{i}"}]}
            return (await http.post("/chat/completions", json=body)).status_code

        statuses = []
        for r in range(rounds):
            statuses += await asyncio.gather(*(one(r * clients + i) for i in range(clients)))
        return statuses


@pytest.mark.parametrize("closes", ["on_reuse", "after_answer", "announced"])
def test_no_request_fails_when_the_teacher_closes_its_connections(
    tmp_path: Path, closes: str
) -> None:
    with FakeTeacher(closes=closes) as teacher:
        config = proxy_config(tmp_path / "data", teacher, max_retries=0)
        with RunningProxy(config) as proxy:
            statuses = asyncio.run(burst(proxy.base_url, clients=8, rounds=6))
            embedded = httpx.post(f"{proxy.base_url}/embeddings", headers=AUTH,
                                  json={"model": "triage", "input": "x"})  # fmt: skip
    assert statuses == [200] * 48
    assert embedded.status_code == 200  # pass-through too
