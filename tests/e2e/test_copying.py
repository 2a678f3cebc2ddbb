"""Routes whose answers copy the prompt (issue 17), small: extraction and free-text tickets
through the real proxy, sealed, curated, retrained on the tiny base, and promoted to 100% on
requests naming people, items, places and products no training row names. The student serves
at least half of them, at least 95% of what it serves equals the teacher's answer, and no
client sees an error. bench/novel_names.py runs the same with default settings, at full size.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from curation.job import run_curation
from curation.settings import CurationSettings
from retrain.job import run_retrain
from retrain.settings import RetrainSettings
from tests.conftest import ADMIN_TOKEN, CLIENT_KEY, RunningProxy, proxy_config
from tests.fakes.teacher import FakeTeacher
from tests.retrain import copy_tasks as tasks

# Traffic, curation and training of a student each: minutes on two shared cores.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
ROUTE = "triage"  # the name proxy_config gives its route
Rows = Callable[..., list[dict[str, Any]]]
# Small: 600 rows and full fine-tuning (with 600 rows and 400 steps a LoRA adapter on the tiny
# base reached 0.82 exact match on extraction; bench/novel_names.py runs the LoRA defaults on
# 2,000 rows).
SMALL = RetrainSettings(
    method="full", pretrain_steps=100, max_steps=400, eval_every=1000, eval_sample=4,
    latency_samples=1, max_new_tokens=48,
)  # fmt: skip


def messages(row: dict[str, Any]) -> list[dict[str, Any]]:
    return list(json.loads(row["messages"]))


def text(row: dict[str, Any]) -> str:
    return str(messages(row)[-1]["content"])


@pytest.mark.parametrize(
    ("known", "unseen"),
    [
        (tasks.extraction_rows, tasks.novel_extraction_rows),
        (tasks.ticket_rows, tasks.novel_ticket_rows),
    ],
    ids=["extraction", "tickets"],
)
def test_a_student_copies_names_it_never_saw(tmp_path: Path, known: Rows, unseen: Rows) -> None:
    train, live = known(600, seed=3), unseen(80, seed=9)
    answers = {text(r): r["answer_text"] for r in train + live}
    data_dir = tmp_path / "data"
    headers = {"authorization": f"Bearer {ADMIN_TOKEN}"}
    with FakeTeacher(answer=lambda body: answers[body["messages"][-1]["content"]]) as teacher:
        with RunningProxy(proxy_config(data_dir, teacher)) as proxy:
            chat = openai.OpenAI(base_url=proxy.base_url, api_key=CLIENT_KEY, max_retries=0)
            for i, row in enumerate(train):
                chat.chat.completions.create(
                    model=ROUTE, messages=messages(row),  # type: ignore[arg-type]
                    extra_headers={"x-apprentice-session": f"s{i // 4}"},
                )  # fmt: skip
            assert httpx.post(f"{proxy.url}/admin/seal", headers=headers).status_code == 200
        curated = run_curation(data_dir, ROUTE, CurationSettings())
        assert curated.written and curated.counts["eval_novel"] > 0, curated.message
        trained = run_retrain(data_dir, ROUTE, SMALL, progress=False)
        assert trained.passed, trained.reasons
        assert (trained.path / "slots.json").exists()  # the answers copy: the student has slots
        config = proxy_config(data_dir, teacher, canary={"holdout_share": 0.0})
        with RunningProxy(config) as proxy:
            body = {"version": f"v{trained.version}", "weight": 100}
            set_weight = httpx.post(
                f"{proxy.url}/admin/canary/{ROUTE}/set-weight", json=body, headers=headers
            )
            assert set_weight.status_code == 200, set_weight.text
            chat = openai.OpenAI(base_url=proxy.base_url, api_key=CLIENT_KEY, max_retries=0)
            served, right = 0, 0
            for i, row in enumerate(live):
                raw = chat.chat.completions.with_raw_response.create(
                    model=ROUTE, messages=messages(row),  # type: ignore[arg-type]
                    extra_headers={"x-apprentice-session": f"live{i}"},
                )  # an error would raise here  # fmt: skip
                answer = raw.parse().choices[0].message.content or ""
                if raw.headers["x-apprentice-served-by"].startswith("student"):
                    served += 1
                    right += answer == row["answer_text"]
                else:
                    assert answer == row["answer_text"]  # the teacher's, invisibly
    assert served >= len(live) / 2, (served, trained.cascade)
    assert right >= 0.95 * served, (right, served, trained.cascade)
