"""POST /v1/feedback: recorded for logged requests, 404 for unknown ids, 422 for bad fields."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
from pydantic import SecretStr

from logbook.segments import open_segments
from tests.conftest import ADMIN_TOKEN, CLIENT_KEY, RunningProxy, proxy_config
from tests.fakes.teacher import FakeTeacher
from tests.proxy.test_chat import client

AUTH = {"authorization": f"Bearer {CLIENT_KEY}"}


def test_feedback_is_recorded_even_before_the_row_is_committed(proxy: RunningProxy) -> None:
    raw = client(proxy).chat.completions.with_raw_response.create(
        model="triage", messages=[{"role": "user", "content": "rate me"}]
    )
    request_id = raw.headers["x-apprentice-request-id"]
    # Posted at once: the row may still be in the capture queue.
    response = httpx.post(
        f"{proxy.base_url}/feedback",
        json={
            "request_id": request_id,
            "score": -1,
            "label": "wrong",
            "correction": "the right answer",
        },
        headers=AUTH,
    )
    assert response.status_code == 200, response.text
    assert response.json()["request_id"] == request_id
    # and once the row is surely committed and sealed
    httpx.post(f"{proxy.url}/admin/seal", headers={"authorization": "Bearer admin-token-789"})
    again = httpx.post(
        f"{proxy.base_url}/feedback", json={"request_id": request_id, "score": 0.5}, headers=AUTH
    )
    assert again.status_code == 200
    proxy.stop()
    rows = (
        open_segments(proxy.config.data_dir)
        .execute("SELECT request_id, route, score, label, correction FROM feedback ORDER BY seq")
        .fetchall()
    )
    assert [(r[0], r[1], r[2], r[3]) for r in rows] == [
        (request_id, "triage", -1.0, "wrong"),
        (request_id, "triage", 0.5, None),
    ]
    assert json.loads(rows[0][4]) == {"role": "assistant", "content": "the right answer"}


def test_unknown_request_id_is_404(proxy: RunningProxy) -> None:
    response = httpx.post(
        f"{proxy.base_url}/feedback", json={"request_id": "req_nope", "score": 1}, headers=AUTH
    )
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "request_not_found"


def test_bad_fields_are_422_in_openai_shape(proxy: RunningProxy) -> None:
    for body in (
        {"request_id": "req_x", "score": 2},
        {"request_id": "req_x"},
        {"request_id": "req_x", "score": "good"},
        {"request_id": "req_x", "score": 1, "surprise": True},
    ):
        response = httpx.post(f"{proxy.base_url}/feedback", json=body, headers=AUTH)
        assert response.status_code == 422, body
        error = response.json()["error"]
        assert error["code"] == "invalid_field" and error["message"].startswith("Invalid field")
    not_json = httpx.post(f"{proxy.base_url}/feedback", content=b"{", headers=AUTH)
    assert not_json.status_code == 422


def test_feedback_needs_a_client_key(proxy: RunningProxy) -> None:
    response = httpx.post(f"{proxy.base_url}/feedback", json={"request_id": "r", "score": 1})
    assert response.status_code == 401


def test_feedback_right_after_a_stream_ends_is_accepted(proxy: RunningProxy) -> None:
    # The row is journaled and queued before the stream's last chunk goes out, so feedback
    # posted the moment the client has it finds the request.
    c = client(proxy)
    for i in range(20):
        with c.chat.completions.with_streaming_response.create(
            model="triage", messages=[{"role": "user", "content": f"s{i}"}], stream=True
        ) as response:
            request_id = response.headers["x-apprentice-request-id"]
            for _ in response.iter_lines():
                pass
        posted = httpx.post(
            f"{proxy.base_url}/feedback", json={"request_id": request_id, "score": 1}, headers=AUTH
        )
        assert posted.status_code == 200, posted.text


def test_feedback_is_bound_to_the_key_that_made_the_request(tmp_path: Path) -> None:
    other_key = "sk-client-other-key-999"
    with FakeTeacher() as teacher:
        config = proxy_config(tmp_path / "data", teacher)
        server = config.server.model_copy(
            update={"api_keys": [*config.server.api_keys, SecretStr(other_key)]}
        )
        with RunningProxy(config.model_copy(update={"server": server})) as proxy:
            raw = client(proxy).chat.completions.with_raw_response.create(
                model="triage", messages=[{"role": "user", "content": "mine"}]
            )
            request_id = raw.headers["x-apprentice-request-id"]
            body = {"request_id": request_id, "score": -1, "correction": "B's text"}
            stranger = httpx.post(f"{proxy.base_url}/feedback", json=body,
                                  headers={"authorization": f"Bearer {other_key}"})  # fmt: skip
            # Another client's request is answered as if it did not exist.
            assert stranger.status_code == 404
            assert stranger.json()["error"]["code"] == "request_not_found"
            admin = httpx.post(f"{proxy.base_url}/feedback", json=body | {"correction": None},
                               headers={"authorization": f"Bearer {ADMIN_TOKEN}"})  # fmt: skip
            assert admin.status_code == 200, admin.text
            owner = httpx.post(f"{proxy.base_url}/feedback", json=body, headers=AUTH)
            assert owner.status_code == 200
            uncaptured = client(proxy).chat.completions.with_raw_response.create(
                model="triage", messages=[{"role": "user", "content": "private"}],
                extra_headers={"x-apprentice-capture": "off"},
            )  # fmt: skip
            never_logged = {"request_id": uncaptured.headers["x-apprentice-request-id"], "score": 1}
            assert (
                httpx.post(
                    f"{proxy.base_url}/feedback", json=never_logged, headers=AUTH
                ).status_code
                == 404
            )
    rows = (
        open_segments(config.data_dir)
        .execute("SELECT correction FROM feedback ORDER BY seq")
        .fetchall()
    )
    assert len(rows) == 2 and json.loads(rows[1][0])["content"] == "B's text"  # the owner's
