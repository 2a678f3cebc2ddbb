"""/v1/feedback authenticates before it reads, and reads within the limits of every other route:
a caller without a key is a 401 before its body is read (not a 422 after), a body over
server.max_body_bytes a 413, a body slower than server.body_timeout_s a 408."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import CLIENT_KEY, RunningProxy, proxy_config
from tests.fakes.teacher import FakeTeacher

LIMIT = 64 * 1024


@pytest.fixture
def proxy(tmp_path: Path, teacher: FakeTeacher) -> Iterator[RunningProxy]:
    config = proxy_config(tmp_path / "data", teacher)
    server = config.server.model_copy(update={"max_body_bytes": LIMIT, "body_timeout_s": 0.5})
    with RunningProxy(config.model_copy(update={"server": server})) as running:
        yield running


def head_only(port: int, headers: str, body: bytes) -> bytes:
    """Send a request's headers and the start of its body; what the server answers within
    5 s (it must not wait for the rest)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(headers.encode() + b"\r\n" + body)
        data = b""
        while b"\r\n\r\n" not in data:
            piece = sock.recv(65536)
            if not piece:
                break
            data += piece
        return data


def test_no_key_is_a_401_before_the_body_is_read(proxy: RunningProxy) -> None:
    for auth in ("", "authorization: Bearer sk-wrong-key-00000\r\n"):
        headers = (
            "POST /v1/feedback HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            f"content-length: 150000000\r\n{auth}"
        )
        answer = head_only(proxy.port, headers, b'{"request_id": "x", ')
        assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
    invalid = httpx.post(f"{proxy.base_url}/feedback", json={"request_id": "r", "score": 9})
    assert invalid.status_code == 401  # the key is checked before the fields
    assert invalid.json()["error"]["code"] == "invalid_api_key"


def test_a_body_over_max_body_bytes_is_a_413(proxy: RunningProxy) -> None:
    big = {"request_id": "req_x", "score": 1, "correction": "x" * (3 * LIMIT)}
    auth = {"authorization": f"Bearer {CLIENT_KEY}"}
    response = httpx.post(f"{proxy.base_url}/feedback", json=big, headers=auth)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"
    chunked = httpx.post(
        f"{proxy.base_url}/feedback", headers=auth, content=iter([b'{"x": "', b"y" * 2 * LIMIT])
    )
    assert chunked.status_code == 413  # no content-length: counted as it arrives


def test_a_body_slower_than_body_timeout_is_a_408(proxy: RunningProxy) -> None:
    headers = (
        "POST /v1/feedback HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        f"content-length: 100\r\nauthorization: Bearer {CLIENT_KEY}\r\n"
    )
    answer = head_only(proxy.port, headers, b'{"request_id": ')
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]


def test_valid_feedback_with_a_key_is_still_judged_by_its_fields(proxy: RunningProxy) -> None:
    auth = {"authorization": f"Bearer {CLIENT_KEY}"}
    bad = httpx.post(f"{proxy.base_url}/feedback", json={"request_id": "r", "score": 9},
                     headers=auth)  # fmt: skip
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_field"
    unknown = httpx.post(f"{proxy.base_url}/feedback", json={"request_id": "r", "score": 1},
                         headers=auth)  # fmt: skip
    assert unknown.status_code == 404
