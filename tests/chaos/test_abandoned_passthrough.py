"""A pass-through call the client abandons while the teacher works is still a row, marked
client_disconnected like an abandoned chat, Responses or Messages call."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import CLIENT_KEY, RunningProxy, proxy_config
from tests.fakes.teacher import FakeTeacher
from tests.proxy.test_chat import logged

GONE = 'apprentice_passthrough_requests_total{endpoint="embeddings",outcome="client_disconnected"'


def test_an_abandoned_embeddings_call_is_logged(tmp_path: Path) -> None:
    with FakeTeacher(latency_s=3.0) as teacher:
        proxy = RunningProxy(proxy_config(tmp_path / "data", teacher))
        with proxy:
            with pytest.raises(httpx.ReadTimeout):  # the client hangs up while the teacher works
                httpx.post(f"{proxy.base_url}/embeddings", timeout=0.5,
                           headers={"authorization": f"Bearer {CLIENT_KEY}"},
                           json={"model": "triage", "input": "slow"})  # fmt: skip
            deadline = time.monotonic() + 10
            while GONE not in httpx.get(f"{proxy.url}/metrics").text:
                assert time.monotonic() < deadline, "the abandoned call was never counted"
                time.sleep(0.05)
            rows = logged(proxy)
    [row] = rows
    assert row["endpoint"] == "embeddings" and row["outcome"] == "client_disconnected"
    assert row["status"] == 499 and row["response"] is None
