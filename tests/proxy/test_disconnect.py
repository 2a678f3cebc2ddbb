"""A client that leaves mid-stream cancels the teacher's call; the part received is logged."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx

from tests.conftest import CLIENT_KEY, RunningProxy, proxy_config
from tests.fakes.teacher import FakeTeacher
from tests.proxy.test_chat import logged


def test_client_disconnect_mid_stream_cancels_upstream_and_logs_partial(
    tmp_path: Path,
) -> None:
    words = " ".join(f"w{i}" for i in range(200))
    teacher = FakeTeacher(chunk_delay_s=0.02, split_seed=None)
    with teacher, RunningProxy(proxy_config(tmp_path / "d", teacher)) as proxy:
        body = {
            "model": "triage",
            "stream": True,
            "messages": [{"role": "user", "content": words}],
        }
        with (
            httpx.Client() as http,
            http.stream(
                "POST",
                f"{proxy.base_url}/chat/completions",
                json=body,
                headers={"authorization": f"Bearer {CLIENT_KEY}"},
            ) as response,
        ):
            received = b""
            for chunk in response.iter_raw():
                received += chunk
                if received.count(b"data:") >= 5:
                    break
            # leaving the block closes the connection mid-stream
        deadline = time.monotonic() + 10
        while teacher.streams_aborted == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert teacher.streams_aborted == 1, "the teacher's stream was not cancelled"
        [row] = logged(proxy)
    assert row["outcome"] == "client_disconnected"
    assert row["truncated"] is True
    partial = json.loads(row["response"])["choices"][0]["message"]["content"]
    full = f"echo: {words}"
    assert partial and full.startswith(partial) and len(partial) < len(full)
