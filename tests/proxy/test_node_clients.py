"""The Vercel AI SDK (Node) pointed at the proxy: its default `openai(model)` calls the
Responses API, plain and streamed, and `openai.chat(model)` chat completions. The npm packages
come from tests/node (`npm ci`, run by .ci/run and `make test`)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from logbook.segments import open_segments
from tests.conftest import CLIENT_KEY, TEACHER_KEY, RunningProxy

NODE_DIR = Path(__file__).resolve().parents[1] / "node"


def node_script() -> list[str]:
    node = shutil.which("node")
    missing = node is None or not (NODE_DIR / "node_modules" / "ai").exists()
    if missing:
        message = "the Vercel AI SDK is not installed: run `cd tests/node && npm ci` (Node 18+)"
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(message)
        pytest.skip(message)
    assert node is not None
    return [node, str(NODE_DIR / "vercel_clients.mjs")]


def run(base_url: str, key: str, model: str) -> dict[str, str]:
    done = subprocess.run([*node_script(), base_url, key, model], capture_output=True,
                          text=True, timeout=120, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    result: dict[str, str] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_the_vercel_ai_sdk_works_unchanged_through_the_proxy(proxy: RunningProxy) -> None:
    teacher_base = proxy.config.routes[0].teacher_api_base
    assert teacher_base is not None
    direct = run(teacher_base, TEACHER_KEY, "fake-teacher-1")
    through = run(proxy.base_url, CLIENT_KEY, "triage")
    assert through == direct
    assert through["plain"] == "echo: hello from node"
    proxy.stop()
    rows = (
        open_segments(proxy.config.data_dir)
        .execute("SELECT endpoint, stream, status FROM requests ORDER BY seq")
        .fetchall()
    )
    assert rows == [("responses", False, 200), ("responses", True, 200),
                    ("chat/completions", False, 200)]  # fmt: skip
