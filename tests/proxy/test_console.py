"""The console's router over plain HTTP: login and its cookie, refusals (no session, no CSRF
token, another origin), and what its API reads from the log, the registry and the canary."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from apprentice.config import Config, config_from_dict
from proxy.console.session import COOKIE, SESSION_S, Sessions
from tests.conftest import ADMIN_TOKEN, CLIENT_KEY, RunningProxy, proxy_config
from tests.fakes.teacher import FakeTeacher
from tests.proxy.console_student import write_student

ADMIN = {"authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
def running(tmp_path: Path, teacher: FakeTeacher) -> Iterator[RunningProxy]:
    data_dir = tmp_path / "data"
    write_student(data_dir, "triage", 1)
    with RunningProxy(proxy_config(data_dir, teacher)) as proxy:
        yield proxy


def login(proxy: RunningProxy) -> tuple[httpx.Client, str]:
    """A client holding a session cookie, and the session's CSRF token."""
    client = httpx.Client(base_url=proxy.url)
    answer = client.post("/ui/login", data={"token": ADMIN_TOKEN})
    assert answer.status_code == 303 and answer.headers["location"] == "/ui/"
    return client, client.get("/ui/api/session").json()["csrf"]


def canary_state(proxy: RunningProxy) -> str:
    state: str = httpx.get(f"{proxy.url}/admin/canary", headers=ADMIN).json()["routes"]["triage"][
        "state"
    ]
    return state


def test_login_sets_a_strict_http_only_cookie_and_never_the_token(running: RunningProxy) -> None:
    answer = httpx.post(f"{running.url}/ui/login", data={"token": ADMIN_TOKEN})
    assert answer.status_code == 303
    cookie = answer.headers["set-cookie"]
    flags = {part.strip().split("=")[0].lower() for part in cookie.split(";")}
    assert {"httponly", "samesite", "path", "max-age"} <= flags
    assert "samesite=strict" in cookie.lower() and "path=/ui" in cookie.lower()
    assert "secure" not in flags  # plain HTTP on loopback: a Secure cookie would be dropped
    assert ADMIN_TOKEN not in cookie and ADMIN_TOKEN not in answer.headers["location"]
    behind_tls = httpx.post(
        f"{running.url}/ui/login",
        data={"token": ADMIN_TOKEN},
        headers={"x-forwarded-proto": "https"},
    )
    assert "secure" in behind_tls.headers["set-cookie"].lower()
    client, _ = login(running)
    page = client.get("/ui/")
    assert page.status_code == 200 and ADMIN_TOKEN not in page.text
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"
    out = client.post("/ui/logout")
    assert out.status_code == 303 and f'{COOKIE}=""' in out.headers["set-cookie"]
    assert client.get("/ui/api/session").status_code == 401


def test_a_wrong_token_is_refused_without_a_cookie(running: RunningProxy) -> None:
    answer = httpx.post(f"{running.url}/ui/login", data={"token": "not-the-token"})
    assert answer.status_code == 401 and "set-cookie" not in answer.headers
    assert "Wrong admin token" in answer.text
    assert httpx.post(f"{running.url}/ui/login", data={}).status_code == 401
    # Without a session the page sends the browser to the form, and the API answers 401.
    page = httpx.get(f"{running.url}/ui/")
    assert page.status_code == 303 and page.headers["location"] == "/ui/login"
    assert httpx.get(f"{running.url}/ui/api/overview").status_code == 401


def test_a_control_without_the_session_cookie_is_refused(running: RunningProxy) -> None:
    _, csrf = login(running)
    for headers in ({}, {"x-apprentice-csrf": csrf}, ADMIN):  # the bearer token is not a session
        answer = httpx.post(
            f"{running.url}/ui/api/canary/triage/start", json={"version": "v1"}, headers=headers
        )
        assert answer.status_code == 401
        assert answer.json()["error"]["code"] == "console_login_required"
    forged = {COOKIE: Sessions("another-token-entirely").new_cookie()}
    answer = httpx.post(
        f"{running.url}/ui/api/canary/triage/start",
        json={"version": "v1"},
        headers={"x-apprentice-csrf": csrf},
        cookies=forged,
    )
    assert answer.status_code == 401
    assert canary_state(running) == "idle"


def test_a_control_without_its_csrf_token_or_from_another_origin_is_refused(
    running: RunningProxy,
) -> None:
    client, csrf = login(running)
    start = "/ui/api/canary/triage/start"
    missing = client.post(start, json={"version": "v1"})
    wrong = client.post(start, json={"version": "v1"}, headers={"x-apprentice-csrf": "0" * 64})
    elsewhere = client.post(
        start,
        json={"version": "v1"},
        headers={"x-apprentice-csrf": csrf, "origin": "https://evil.example"},
    )
    for answer in (missing, wrong, elsewhere):
        assert answer.status_code == 403 and answer.json()["error"]["code"] == "csrf_refused"
    assert canary_state(running) == "idle"
    cross_login = httpx.post(
        f"{running.url}/ui/login",
        data={"token": ADMIN_TOKEN},
        headers={"origin": "https://evil.example"},
    )
    assert cross_login.status_code == 403 and "set-cookie" not in cross_login.headers
    done = client.post(start, json={"version": "v1"}, headers={"x-apprentice-csrf": csrf})
    assert done.status_code == 200 and done.json()["state"] == "shadow"
    assert canary_state(running) == "shadow"


def test_controls_answer_like_the_admin_api_refusals_included(running: RunningProxy) -> None:
    client, csrf = login(running)
    headers = {"x-apprentice-csrf": csrf}
    refused = client.post("/ui/api/canary/triage/promote", json={}, headers=headers)
    admin = httpx.post(f"{running.url}/admin/canary/triage/promote", json={}, headers=ADMIN)
    assert refused.status_code == admin.status_code == 409
    assert refused.json() == admin.json()
    weighted = client.post(
        "/ui/api/canary/triage/set-weight", json={"version": "v1", "weight": 30}, headers=headers
    )
    assert weighted.json()["weights"] == {"v1": 30}
    bad = client.post(
        "/ui/api/canary/triage/set-weight", json={"version": "v1", "weight": 300}, headers=headers
    )
    assert bad.status_code == 422 and "weight" in bad.json()["error"]["message"]
    view = client.get("/ui/api/routes/triage").json()
    assert view["canary"]["state"] == "canary" and view["canary"]["weights"] == {"v1": 30}
    methods = {m["method"]: m for m in view["drift"]["methods"]}
    assert methods["prompt_length_psi"]["act"] == 0.25 and methods["prompt_length_psi"]["warn"]


def test_sessions_hold_on_every_replica_with_the_same_token_until_they_expire() -> None:
    made = Sessions(ADMIN_TOKEN).new_cookie(now=1_000.0)
    other_replica = Sessions(ADMIN_TOKEN)
    session = other_replica.check(made, now=1_001.0)
    assert session is not None and session.csrf == Sessions(ADMIN_TOKEN).check(made, 1_001.0).csrf  # type: ignore[union-attr]
    assert other_replica.check(made, now=1_000.0 + SESSION_S + 1) is None
    assert Sessions("a-new-admin-token").check(made, now=1_001.0) is None
    expires, nonce = made.split(".")[1:3]
    assert other_replica.check(f"v1.{int(expires) + 9999}.{nonce}.{made.split('.')[3]}") is None
    assert other_replica.check("garbage") is None and other_replica.check(None) is None


def test_traffic_log_and_one_request_with_its_feedback(running: RunningProxy) -> None:
    openai_client = openai.OpenAI(base_url=running.base_url, api_key=CLIENT_KEY)
    ids = []
    for i in range(4):
        raw = openai_client.chat.completions.with_raw_response.create(
            model="triage", messages=[{"role": "user", "content": f"my card is stuck {i}"}]
        )
        ids.append(raw.headers["x-apprentice-request-id"])
    feedback = httpx.post(
        f"{running.base_url}/feedback",
        json={"request_id": ids[0], "score": -1, "comment": "wrong queue"},
        headers={"authorization": f"Bearer {CLIENT_KEY}"},
    )
    assert feedback.status_code == 200, feedback.text
    httpx.post(f"{running.url}/admin/seal", headers=ADMIN).raise_for_status()  # half sealed
    openai_client.chat.completions.create(
        model="triage", messages=[{"role": "user", "content": "one more, not sealed"}]
    )
    client, _ = login(running)
    overview = client.get("/ui/api/overview", params={"window": "hour"}).json()
    traffic = overview["routes"][0]["traffic"]
    assert traffic["requests"] == 5 and traffic["errors"] == 0  # sealed and hot, once each
    assert traffic["served_by"][0]["served_by"] == "teacher"
    assert traffic["served_by"][0]["share"] == 1.0 and traffic["cost_paid_usd"] > 0
    assert client.get("/ui/api/overview", params={"window": "week"}).status_code == 400
    listed = client.get("/ui/api/log/triage").json()["requests"]
    assert [r["request_id"] for r in listed[1:]] == ids[::-1]
    assert client.get("/ui/api/log/triage", params={"served_by": "student"}).json() == {
        "route": "triage",
        "requests": [],
    }
    assert len(client.get("/ui/api/log/triage", params={"outcome": "ok"}).json()["requests"]) == 5
    one = client.get(f"/ui/api/requests/{ids[0]}").json()
    assert one["request"]["messages"][0]["content"] == "my card is stuck 0"
    assert one["response"]["choices"][0]["message"]["content"]
    assert [(f["score"], f["comment"]) for f in one["feedback"]] == [(-1.0, "wrong queue")]
    assert client.get("/ui/api/requests/req_nope").status_code == 404


def test_student_page_data_and_jobs(running: RunningProxy) -> None:
    client, _ = login(running)
    student = client.get("/ui/api/students/triage/v1").json()
    assert student["status"] == "candidate" and student["eval"]["slices"]["novel"]["n"] == 40
    assert student["history"][0]["train_loss"] > student["history"][-1].get("train_loss", 0)
    assert [s["name"] for s in student["dataset"]["stages"]][:2] == ["select", "quality"]
    assert client.get("/ui/api/students/triage/v9").status_code == 404
    assert client.get("/ui/api/students/nope/v1").status_code == 404
    jobs = client.get("/ui/api/jobs").json()["routes"]["triage"]
    assert jobs["datasets"][0]["version"] == "v1" and jobs["students"][0]["version"] == 1
    # The static files ship in the package; nothing outside their folder is served.
    assert client.get("/ui/static/core.js").headers["content-type"].startswith("text/javascript")
    for name in ("..%2Fsession.py", ".hidden.js", "session.py"):
        answer = client.get(f"/ui/static/{name}")
        assert answer.status_code in (404, 501) and "class Sessions" not in answer.text


def replica_config(data_dir: Path, shared: Path, teacher: FakeTeacher) -> Config:
    """A replica with its own data_dir, sharing a store folder and a SQLite control plane."""
    raw = proxy_config(data_dir, teacher).model_dump(mode="json")
    raw = {k: raw[k] for k in ("data_dir", "logbook", "routes")}
    raw["server"] = {"api_keys": [CLIENT_KEY], "admin_token": ADMIN_TOKEN, "port": 0}
    raw["routes"][0]["teacher_api_key"] = "sk-teacher-secret-456"
    raw["store"] = {"url": str(shared)}
    raw["cluster"] = {"control_url": f"sqlite:///{shared}/control.sqlite3", "poll_interval_s": 0.2}
    return config_from_dict(raw)


def test_a_session_made_on_one_replica_moves_the_route_on_every_replica(
    tmp_path: Path, teacher: FakeTeacher
) -> None:
    shared = tmp_path / "shared"
    write_student(shared, "triage", 1)
    with (
        RunningProxy(replica_config(tmp_path / "a", shared, teacher)) as a,
        RunningProxy(replica_config(tmp_path / "b", shared, teacher)) as b,
    ):
        client_a, csrf = login(a)
        on_b = httpx.Client(base_url=b.url, cookies={COOKIE: client_a.cookies[COOKIE]})
        assert on_b.get("/ui/api/session").json()["csrf"] == csrf
        moved = on_b.post(
            "/ui/api/canary/triage/set-weight",
            json={"version": "v1", "weight": 25},
            headers={"x-apprentice-csrf": csrf},
        )
        assert moved.status_code == 200 and moved.json()["weights"] == {"v1": 25}
        deadline = time.monotonic() + 15  # replica a adopts the stored snapshot at its next tick
        while client_a.get("/ui/api/routes/triage").json()["canary"]["weights"] != {"v1": 25}:
            assert time.monotonic() < deadline, "replica a never followed the control made on b"
            time.sleep(0.1)


def test_no_console_without_an_admin_token(tmp_path: Path, teacher: FakeTeacher) -> None:
    raw = replica_config(tmp_path / "data", tmp_path / "shared", teacher).model_dump(mode="json")
    raw = {"data_dir": raw["data_dir"], "routes": raw["routes"], "server": {"port": 0}}
    raw["routes"][0]["teacher_api_key"] = "sk-teacher-secret-456"
    with RunningProxy(config_from_dict(raw)) as proxy:
        form = httpx.get(f"{proxy.url}/ui/login")
        assert form.status_code == 403 and form.json()["error"]["code"] == "admin_disabled"
        login = httpx.post(f"{proxy.url}/ui/login", data={"token": "anything-at-all"})
        assert login.status_code == 403 and "set-cookie" not in login.headers
