"""A teacher that streams its key a few characters an event: no client reassembles it and no
row stores it, on every streaming surface, pass-through and litellm alike; nor one that writes
it with JSON escapes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import orjson
import pytest

from logbook.segments import open_segments
from tests.conftest import CLIENT_KEY, TEACHER_KEY, RunningProxy, proxy_config
from tests.fakes.teacher import Failure, FakeTeacher

SAID = f"the key is {TEACHER_KEY} keep it"
ASK = [{"role": "user", "content": "tell me"}]


def rows_text(data_dir: Path) -> str:
    cur = open_segments(data_dir).execute("SELECT * FROM requests")
    return json.dumps([list(r) for r in cur.fetchall()], default=str)


def started(tmp_path: Path, fake: FakeTeacher, teacher: str, **route: Any) -> RunningProxy:
    config = proxy_config(tmp_path / "data", fake, **route)
    changed = config.routes[0].model_copy(update={"teacher": teacher})
    return RunningProxy(config.model_copy(update={"routes": [changed]}))


def chat_text(proxy: RunningProxy) -> str:
    client = openai.OpenAI(base_url=proxy.base_url, api_key=CLIENT_KEY, max_retries=0)
    stream = client.chat.completions.create(model="triage", messages=ASK, stream=True)  # type: ignore[arg-type]
    return "".join(c.choices[0].delta.content or "" for c in stream if c.choices)


def responses_text(proxy: RunningProxy) -> str:
    client = openai.OpenAI(base_url=proxy.base_url, api_key=CLIENT_KEY, max_retries=0)
    text = ""
    with client.responses.stream(model="triage", input="tell me") as stream:
        for event in stream:
            if event.type == "response.output_text.delta":
                text += event.delta
        final = stream.get_final_response().output_text
    return text + "\n" + final


def messages_text(proxy: RunningProxy) -> str:
    client = anthropic.Anthropic(base_url=proxy.url, api_key=CLIENT_KEY, max_retries=0)
    with client.messages.stream(model="triage", max_tokens=64, messages=ASK) as stream:  # type: ignore[arg-type]
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    return text + "\n" + "".join(getattr(b, "text", "") for b in final.content)


def completions_text(proxy: RunningProxy) -> str:
    client = openai.OpenAI(base_url=proxy.base_url, api_key=CLIENT_KEY, max_retries=0)
    stream = client.completions.create(model="triage", prompt="tell me", stream=True)
    return "".join(c.choices[0].text for c in stream if c.choices)


CASES = {
    "chat, pass-through": ("openai/fake-teacher-1", {}, chat_text),
    "chat, litellm": ("anthropic/claude-fake", {"upstream": "litellm"}, chat_text),
    "responses, pass-through": ("openai/fake-teacher-1", {}, responses_text),
    "responses, litellm": ("anthropic/claude-fake", {"upstream": "litellm"}, responses_text),
    "messages, pass-through": ("anthropic/claude-fake", {}, messages_text),
    "messages, translated": ("openai/fake-teacher-1", {}, messages_text),
    "completions, relayed": ("openai/fake-teacher-1", {}, completions_text),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_key_streamed_a_few_characters_an_event_is_redacted(tmp_path: Path, case: str) -> None:
    teacher, route, read = CASES[case]
    with FakeTeacher(answer=lambda payload: SAID, delta_chars=3) as fake:
        with started(tmp_path, fake, teacher, **route) as proxy:
            seen = read(proxy)
        stored = rows_text(proxy.config.data_dir)
    assert TEACHER_KEY not in seen and "[redacted]" in seen, seen
    assert "the key is [redacted] keep it" in seen  # the text around the key arrives whole
    assert TEACHER_KEY not in stored and "[redacted]" in stored


def test_a_key_written_with_json_escapes_is_redacted(tmp_path: Path) -> None:
    escaped = "".join(f"\\u{ord(c):04x}" for c in TEACHER_KEY)
    body = (
        '{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"fake-teacher-1",'
        '"choices":[{"index":0,"message":{"role":"assistant","content":"key: ' + escaped + '"},'
        '"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":2,'
        '"total_tokens":3}}'
    ).encode()
    assert orjson.loads(body)["choices"][0]["message"]["content"] == f"key: {TEACHER_KEY}"
    with FakeTeacher() as fake:
        with started(tmp_path, fake, "openai/fake-teacher-1") as proxy:
            fake.fail_next(Failure(status=200, body=body))
            answer = httpx.post(
                f"{proxy.base_url}/chat/completions",
                headers={"authorization": f"Bearer {CLIENT_KEY}"},
                json={"model": "triage", "messages": ASK},
            )
        stored = rows_text(proxy.config.data_dir)
    assert answer.status_code == 200
    assert answer.json()["choices"][0]["message"]["content"] == "key: [redacted]"
    assert TEACHER_KEY not in stored and escaped not in stored and "[redacted]" in stored
