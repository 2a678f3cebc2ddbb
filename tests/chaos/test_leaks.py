"""A teacher that quotes its key, in answers, in errors, split across stream chunks and in a
header: no byte of it reaches a client, a row or /metrics."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import orjson
import pytest

from logbook.segments import open_segments
from tests.conftest import CLIENT_KEY, TEACHER_KEY, RunningProxy, proxy_config
from tests.fakes.teacher import Failure, FakeTeacher

AUTH = {"authorization": f"Bearer {CLIENT_KEY}"}


def rows_text(data_dir: Path) -> str:
    con = open_segments(data_dir)
    cur = con.execute("SELECT * FROM requests")
    return json.dumps([list(r) for r in cur.fetchall()], default=str)


@pytest.mark.parametrize("split_seed", [1, 2, 3, 4, 5])
def test_a_teacher_echoing_its_key_never_leaks_it(tmp_path: Path, split_seed: int) -> None:
    # The fake writes its SSE stream in pieces cut at random bytes: the key is split across
    # chunks in some of these runs, whole in others.
    echo = f"your key is {TEACHER_KEY}, keep it safe; again: {TEACHER_KEY}"
    with FakeTeacher(answer=lambda payload: echo, split_seed=split_seed) as teacher:
        config = proxy_config(tmp_path / "data", teacher)
        with RunningProxy(config) as proxy:
            seen = []
            plain = httpx.post(
                f"{proxy.base_url}/chat/completions", headers=AUTH,
                json={"model": "triage", "messages": [{"role": "user", "content": "hi"}]},
            )  # fmt: skip
            assert plain.status_code == 200
            seen.append(plain.text)
            stream = httpx.post(
                f"{proxy.base_url}/chat/completions", headers=AUTH,
                json={"model": "triage", "stream": True,
                      "messages": [{"role": "user", "content": "hi"}]},
            )  # fmt: skip
            assert stream.status_code == 200 and "[DONE]" in stream.text
            seen.append(stream.text)
            message = f"Incorrect API key provided: {TEACHER_KEY}."
            error_object = {"message": message, "type": "invalid_request_error", "param": None,
                            "code": "invalid_api_key"}  # fmt: skip
            quoted = orjson.dumps({"error": error_object})
            teacher.fail_next(Failure(status=401, body=quoted))
            error = httpx.post(
                f"{proxy.base_url}/chat/completions", headers=AUTH,
                json={"model": "triage", "messages": [{"role": "user", "content": "x"}]},
            )  # fmt: skip
            assert error.status_code == 401 and "[redacted]" in error.text
            seen.append(error.text + json.dumps(dict(error.headers)))
            seen.append(httpx.get(f"{proxy.url}/metrics").text)
        stored = rows_text(config.data_dir)
    for text in [*seen, stored]:
        assert TEACHER_KEY not in text
    assert "your key is [redacted], keep it safe" in seen[0]
    assert "[redacted]" in stored  # the rows keep what was said, without the key


def test_a_client_key_sent_in_a_prompt_is_not_stored(tmp_path: Path, teacher: FakeTeacher) -> None:
    config = proxy_config(tmp_path / "data", teacher)
    with RunningProxy(config) as proxy:
        httpx.post(
            f"{proxy.base_url}/chat/completions", headers=AUTH,
            json={"model": "triage",
                  "messages": [{"role": "user", "content": f"my key is {CLIENT_KEY}"}]},
        )  # fmt: skip
    stored = rows_text(config.data_dir)
    assert CLIENT_KEY not in stored and "my key is [redacted]" in stored
