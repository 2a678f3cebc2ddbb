"""Pass-through stays under the teacher's base URL: dot segments, percent-encoded in any case
and twice, Azure-style paths included, are refused with a 400 before the teacher (and its key)
is reached."""

from __future__ import annotations

import http.client
import json

import pytest

from tests.conftest import CLIENT_KEY, RunningProxy, proxy_config
from tests.fakes.teacher import FakeTeacher

ESCAPES = [
    ("GET", "/v1/../../internal/admin?model=triage"),
    ("GET", "/v1/%2e%2e/%2e%2e/internal/admin?model=triage"),
    ("GET", "/v1/%2E%2E/%2e%2E/internal/admin"),
    ("GET", "/v1/%252e%252e/%252E%252E/internal/admin"),
    ("GET", "/v1/files/..%2f..%2f..%2finternal/admin"),
    ("GET", "/v1/files/.%2e/.%2e/.%2e/internal/admin"),
    ("POST", "/v1/embeddings/../../../internal/admin"),
    ("DELETE", "/v1/responses/./../../internal/admin"),
    ("GET", "/openai/deployments/triage/%2e%2e/%2e%2e/internal/admin?api-version=2024-10-21"),
    ("GET", "/openai/deployments/triage/../../internal/admin?api-version=2024-10-21"),
]


def raw_request(port: int, method: str, path: str) -> tuple[int, bytes]:
    """One request with its target sent exactly as written (no client normalises it)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    body = json.dumps({"model": "triage", "input": "x"}) if method == "POST" else None
    headers = {"authorization": f"Bearer {CLIENT_KEY}", "content-type": "application/json"}
    connection.request(method, path, body=body, headers=headers)
    response = connection.getresponse()
    status, data = response.status, response.read()
    connection.close()
    return status, data


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> tuple[RunningProxy, FakeTeacher]:
    with FakeTeacher() as teacher:
        config = proxy_config(tmp_path_factory.mktemp("data"), teacher)
        with RunningProxy(config) as proxy:
            yield proxy, teacher  # type: ignore[misc]


@pytest.mark.parametrize(("method", "path"), ESCAPES)
def test_a_path_that_leaves_the_teacher_base_is_refused(
    served: tuple[RunningProxy, FakeTeacher], method: str, path: str
) -> None:
    proxy, teacher = served
    before = len(teacher.received)
    status, body = raw_request(proxy.port, method, path)
    assert status == 400, body
    error = json.loads(body)["error"]
    assert error["code"] == "invalid_path" and ".." in error["message"]
    assert len(teacher.received) == before  # the teacher never saw it, key or no key


def test_an_anthropic_client_gets_the_refusal_in_its_own_shape(
    served: tuple[RunningProxy, FakeTeacher],
) -> None:
    proxy, teacher = served
    before = len(teacher.received)
    connection = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    headers = {"authorization": f"Bearer {CLIENT_KEY}", "anthropic-version": "2023-06-01"}
    connection.request("GET", "/v1/messages/%2e%2e/%2e%2e/internal/admin", headers=headers)
    response = connection.getresponse()
    body = json.loads(response.read())
    assert response.status == 400 and body["type"] == "error"
    assert body["error"]["type"] == "invalid_request_error" and ".." in body["error"]["message"]
    assert len(teacher.received) == before


def test_ordinary_pass_through_paths_still_reach_the_teacher(
    served: tuple[RunningProxy, FakeTeacher],
) -> None:
    proxy, teacher = served
    status, _ = raw_request(proxy.port, "POST", "/v1/embeddings")
    assert status == 200 and teacher.received[-1].path.endswith("/v1/embeddings")
    status, _ = raw_request(proxy.port, "GET", "/v1/vector_stores/vs_abc123.v2")
    assert teacher.received[-1].path.endswith("/v1/vector_stores/vs_abc123.v2")
    assert all("internal" not in r.path for r in teacher.received)
