"""Bad input, auth, and teacher failures: clear OpenAI-shaped errors, nothing logged as a pair."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import httpx
import openai
import pytest

from tests.conftest import CLIENT_KEY, TEACHER_KEY, RunningProxy, proxy_config
from tests.fakes.teacher import Failure, FakeTeacher
from tests.proxy.test_chat import client, logged

AUTH = {"authorization": f"Bearer {CLIENT_KEY}"}
HELLO = [{"role": "user", "content": "hello"}]


def error_of(response: httpx.Response) -> dict[str, object]:
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    error: dict[str, object] = body["error"]
    return error


def test_missing_or_wrong_key_is_401_and_the_teacher_is_not_called(
    proxy: RunningProxy, teacher: FakeTeacher
) -> None:
    bad = openai.OpenAI(base_url=proxy.base_url, api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as err:
        bad.chat.completions.create(model="triage", messages=HELLO)  # type: ignore[arg-type]
    assert "server.api_keys" in str(err.value)
    none = httpx.post(f"{proxy.base_url}/chat/completions", json={"model": "triage"})
    assert none.status_code == 401 and error_of(none)["code"] == "invalid_api_key"
    assert none.headers["x-apprentice-request-id"].startswith("req_")
    assert teacher.received == []
    assert logged(proxy) == []


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        (b"{not json", 400, None),
        (b"[1, 2]", 400, None),
        (b'{"model": "triage"}', 400, "messages"),
        (b'{"model": "triage", "messages": []}', 400, "messages"),
        (b'{"model": 3, "messages": [{"role": "user", "content": "x"}]}', 400, "model"),
        (b'{"model": "triage", "messages": ["hi"]}', 400, "messages[0]"),
        (b'{"model": "triage", "messages": [{"role": "user"}], "stream": "yes"}', 400, "stream"),
        (b'{"model": "triage", "messages": [{"role": "user"}], "n": 0}', 400, "n"),
    ],
)
def test_malformed_requests_get_400_and_are_not_logged(
    proxy: RunningProxy, teacher: FakeTeacher, body: bytes, status: int, param: str | None
) -> None:
    response = httpx.post(
        f"{proxy.base_url}/chat/completions",
        content=body,
        headers=AUTH | {"content-type": "application/json"},
    )
    assert response.status_code == status
    assert error_of(response)["param"] == param
    assert teacher.received == []
    assert logged(proxy) == []


def test_oversize_body_is_413(tmp_path: Path, teacher: FakeTeacher) -> None:
    config = proxy_config(tmp_path / "d", teacher)
    config = config.model_copy(
        update={"server": config.server.model_copy(update={"max_body_bytes": 1000})}
    )
    with RunningProxy(config) as running:
        big = {"model": "triage", "messages": [{"role": "user", "content": "x" * 2000}]}
        response = httpx.post(f"{running.base_url}/chat/completions", json=big, headers=AUTH)
        assert response.status_code == 413
        assert "max_body_bytes" in str(error_of(response)["message"])
        assert logged(running) == []


def test_unsupported_paths_and_methods_are_refused_clearly(proxy: RunningProxy) -> None:
    # Not a 404: clients read a 404 as an unknown model.
    elsewhere = httpx.post(f"{proxy.url}/v2/chat", json={"input": "x"}, headers=AUTH)
    assert elsewhere.status_code == 501
    error = error_of(elsewhere)
    assert error["code"] == "unsupported_endpoint" and "/v1/messages" in str(error["message"])
    wrong_method = httpx.delete(f"{proxy.base_url}/feedback", headers=AUTH)
    assert wrong_method.status_code == 405
    assert error_of(wrong_method)["code"] == "method_not_allowed"


def test_429_then_success_is_retried_invisibly(proxy: RunningProxy, teacher: FakeTeacher) -> None:
    teacher.fail_next(Failure(429, retry_after=0.01), Failure(503))
    answer = client(proxy).chat.completions.create(model="triage", messages=HELLO)  # type: ignore[arg-type]
    assert answer.choices[0].message.content == "echo: hello"
    assert len(teacher.received) == 3
    [row] = logged(proxy)
    assert row["outcome"] == "ok"


def test_persistent_500_is_passed_through_with_status_and_logged(
    proxy: RunningProxy, teacher: FakeTeacher
) -> None:
    teacher.fail_next(*[Failure(500)] * 3)
    with pytest.raises(openai.InternalServerError) as err:
        client(proxy).chat.completions.create(model="triage", messages=HELLO)  # type: ignore[arg-type]
    assert err.value.status_code == 500
    assert "fake failure 500" in str(err.value)
    [row] = logged(proxy)
    assert (row["status"], row["outcome"]) == (500, "upstream_error")
    assert "fake failure 500" in row["error"]


def test_non_json_upstream_error_is_wrapped_in_openai_shape(
    proxy: RunningProxy, teacher: FakeTeacher
) -> None:
    teacher.fail_next(Failure(400, body=b"<html>bad gateway config</html>"))
    response = httpx.post(
        f"{proxy.base_url}/chat/completions",
        json={"model": "triage", "messages": HELLO},
        headers=AUTH,
    )
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "teacher_error" and "HTTP 400" in str(error["message"])


def test_unreachable_teacher_is_502_after_retries_and_secrets_stay_hidden(
    tmp_path: Path, teacher: FakeTeacher, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    config = proxy_config(tmp_path / "d", teacher, teacher_api_base="http://127.0.0.1:9/v1")
    with RunningProxy(config) as running:
        response = httpx.post(
            f"{running.base_url}/chat/completions",
            json={"model": "triage", "messages": HELLO},
            headers=AUTH,
        )
        assert response.status_code == 502
        assert error_of(response)["code"] == "teacher_unreachable"
        text = httpx.get(f"{running.url}/metrics").text
        assert 'apprentice_teacher_retries_total{reason="connect",route="triage"} 2.0' in text
        rows = logged(running)
    dumped = json.dumps(rows, default=str) + response.text + caplog.text
    assert TEACHER_KEY not in dumped and CLIENT_KEY not in dumped
    assert rows[0]["outcome"] == "upstream_error"


def test_dropped_connection_before_answer_is_retried(
    proxy: RunningProxy, teacher: FakeTeacher
) -> None:
    teacher.fail_next(Failure(drop_connection=True))
    answer = client(proxy).chat.completions.create(model="triage", messages=HELLO)  # type: ignore[arg-type]
    assert answer.choices[0].message.content == "echo: hello"


def test_admin_needs_the_admin_token(proxy: RunningProxy) -> None:
    assert httpx.get(f"{proxy.url}/admin/routes").status_code == 401
    assert httpx.get(f"{proxy.url}/admin/routes", headers=AUTH).status_code == 401
    ok = httpx.get(f"{proxy.url}/admin/routes", headers={"authorization": "Bearer admin-token-789"})
    assert ok.status_code == 200
    assert ok.json()["routes"][0]["name"] == "triage"
    assert TEACHER_KEY not in ok.text


def test_a_bug_is_a_500_in_openai_shape_counted_and_logged_like_any_answer(
    proxy: RunningProxy, teacher: FakeTeacher, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Fault injection: the teacher call raises what no handler expects, as a bug would.
    from proxy.teacher import Teacher

    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("an unexpected bug with sk-teacher-secret-456 in it")

    monkeypatch.setattr(Teacher, "call", broken)
    response = httpx.post(
        f"{proxy.base_url}/chat/completions", headers=AUTH,
        json={"model": "triage", "messages": HELLO},
    )  # fmt: skip
    assert response.status_code == 500
    error = error_of(response)
    assert (error["type"], error["code"]) == ("server_error", "internal_error")
    assert "sk-teacher" not in response.text and "unexpected bug" not in response.text
    text = httpx.get(f"{proxy.url}/metrics").text
    assert 'apprentice_requests_total{outcome="error",route="triage",served_by="teacher"} 1.0' in (
        text
    )
    [row] = logged(proxy)
    assert (row["status"], row["outcome"]) == (500, "error")
    assert row["request_id"] == response.headers["x-apprentice-request-id"]
