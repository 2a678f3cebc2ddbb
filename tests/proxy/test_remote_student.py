"""A route whose students are served by an OpenAI-compatible server (vLLM, LoRAX)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from tests.conftest import ADMIN_TOKEN, RunningProxy, proxy_config
from tests.fakes.teacher import FakeTeacher
from tests.proxy.test_chat import client, logged


def test_remote_student_serves_its_weight_under_the_route_name(
    tmp_path: Path, teacher: FakeTeacher
) -> None:
    data_dir = tmp_path / "data"
    folder = data_dir / "students" / "triage" / "v1"
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(json.dumps({"status": "candidate"}))
    with FakeTeacher(model="remote-student") as remote:
        remote.answer = lambda payload: "from the student server"
        config = proxy_config(
            data_dir, teacher, student_api_base=remote.base_url, student_api_key="sk-remote-1",
            canary={"holdout_share": 0.0, "shadow_share": 0.0},
        )  # fmt: skip
        with RunningProxy(config) as running:
            set_weight = httpx.post(
                f"{running.url}/admin/canary/triage/set-weight",
                json={"version": "v1", "weight": 100},
                headers={"authorization": f"Bearer {ADMIN_TOKEN}"},
            )
            assert set_weight.status_code == 200, set_weight.text
            raw = client(running).chat.completions.with_raw_response.create(
                model="triage", messages=[{"role": "user", "content": "hello"}]
            )
            rows = logged(running)
        asked = remote.received[-1]
    assert raw.headers["x-apprentice-served-by"] == "student:v1"
    assert raw.parse().choices[0].message.content == "from the student server"
    assert raw.parse().model == "triage"
    assert asked.body["model"] == "triage-v1"  # student_model default "{route}-v{version}"
    assert asked.headers["authorization"] == "Bearer sk-remote-1"
    assert teacher.received == []
    assert [r["served_by"] for r in rows] == ["student:v1"]
