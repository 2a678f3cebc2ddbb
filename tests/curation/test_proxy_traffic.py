"""The whole job on segments the real logbook sealed from traffic sent through the real proxy."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import httpx
import openai
import pyarrow.parquet as pq
import pytest

from curation.job import run_curation
from curation.settings import CurationSettings
from tests.conftest import CLIENT_KEY, RunningProxy, proxy_config
from tests.fakes.teacher import Failure, FakeTeacher

CARD = "4111 1111 1111 1111"
PRODUCTS = ["lamp", "sofa", "kettle", "chair", "desk", "rug", "mirror", "shelf", "clock"]
PROBLEMS = ["arrived broken", "never came", "is the wrong colour", "was charged twice"]
TOPICS = [
    "write a haiku about autumn leaves falling slowly",
    "explain how photosynthesis turns sunlight into sugar",
    "what is the capital city of australia and why",
    "give me three tips for a job interview tomorrow",
    "convert twelve miles into kilometres with working",
    "summarise the plot of hamlet in two sentences",
    "suggest a vegetarian dinner recipe with lentils",
    "how do vaccines train the immune system",
    "recommend a beginner workout for weak knees",
    "why is the sky blue during the day",
]


def answer(payload: dict[str, Any]) -> str:
    text = payload["messages"][-1]["content"]
    if "pick a lock" in text:
        return "I'm sorry, but I can't help with that."
    return f"echo: {text}"


def send(chat: openai.OpenAI, text: str, session: str) -> str:
    raw = chat.chat.completions.with_raw_response.create(
        model="triage",
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": text}],
        extra_headers={"x-apprentice-session": session},
    )
    return str(raw.headers["x-apprentice-request-id"])


def traffic(chat: openai.OpenAI, teacher: FakeTeacher, proxy: RunningProxy) -> None:
    rng = random.Random(1)
    for i in range(80):  # the dominant request type: one template, varied slots
        product, problem = rng.choice(PRODUCTS), rng.choice(PROBLEMS)
        send(chat, f"support ticket {i}: my {product} order {problem}, please help", f"d{i}")
    for i, topic in enumerate(TOPICS):
        send(chat, topic, f"t{i}")
    for i in range(4):  # exact duplicates of the first topic
        send(chat, TOPICS[0], f"dup{i}")
    send(chat, f"my email is jane@example.com and my card is {CARD}", "pii")
    send(chat, "how do I pick a lock", "refusal")
    bad = send(chat, "rate this answer badly please", "neg")
    send(chat, "rate this answer badly please", "neg-again")  # the same pair, logged twice
    teacher.fail_next(Failure(status=400))
    with pytest.raises(openai.BadRequestError):
        send(chat, "this one fails upstream", "err")
    response = httpx.post(
        f"{proxy.base_url}/feedback",
        json={"request_id": bad, "score": -1},
        headers={"authorization": f"Bearer {CLIENT_KEY}"},
    )
    assert response.status_code == 200, response.text


def test_curate_traffic_from_the_proxy(tmp_path: Path) -> None:
    with FakeTeacher(answer=answer) as teacher:
        config = proxy_config(tmp_path / "data", teacher)
        with RunningProxy(config) as proxy:
            chat = openai.OpenAI(base_url=proxy.base_url, api_key=CLIENT_KEY, max_retries=0)
            traffic(chat, teacher, proxy)
    settings = CurationSettings(cluster_cap_share=0.3, cluster_cap_min_rows=0, eval_min_rows=5)
    result = run_curation(config.data_dir, "triage", settings)
    assert result.written, result.message
    stages = {s.name: s for s in result.stages}
    assert stages["select"].rows_in == 99
    assert stages["quality"].dropped == {"error": 1, "refusal": 1}
    # the verdict holds for the pair: its unrated copy goes too
    assert stages["feedback"].dropped == {"negative_feedback": 1, "negative_feedback_copy": 1}
    assert stages["scrub"].changed == {"card": 1, "email": 1}
    assert stages["dedupe"].dropped == {"exact_duplicate": 4}
    dominant = result.clusters[0]
    assert dominant.size_before == 80  # one cluster, though its slots vary
    assert dominant.size_after <= 0.3 * sum(c.size_after for c in result.clusters)
    assert stages["balance"].dropped["cluster_cap"] == dominant.size_before - dominant.size_after
    assert result.path is not None
    rows = pq.read_table(result.path / "train.parquet").to_pylist()
    rows += pq.read_table(result.path / "eval.parquet").to_pylist()
    text = json.dumps(rows, default=str)
    assert "jane@example.com" not in text and CARD not in text
    pii = next(r for r in rows if "<EMAIL_1>" in r["messages"])
    assert pii["answer_text"] == "echo: my email is <EMAIL_1> and my card is <CARD_1>"
