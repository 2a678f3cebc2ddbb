from __future__ import annotations

import pytest

from curation.quality import keep_good_answers
from curation.settings import CurationSettings
from tests.curation.logged_rows import make_pair


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"outcome": "upstream_error", "status": 502, "answer": None}, "error"),
        ({"status": 429}, "error"),
        ({"truncated": True}, "truncated"),
        ({"finish_reason": "length"}, "length"),
        ({"answer": {"role": "assistant", "content": "  "}}, "empty"),
        ({"answer": {"role": "assistant", "content": None, "refusal": "no"}}, "refusal"),
        ({"prompt_tokens": 4000, "completion_tokens": 200}, "too_long"),
    ],
)
def test_each_bad_answer_is_dropped_with_its_reason(fields: dict[str, object], reason: str) -> None:
    kept, report = keep_good_answers([make_pair("q", **fields), make_pair("q")], CurationSettings())
    assert len(kept) == 1
    assert report.dropped == {reason: 1}


@pytest.mark.parametrize(
    "answer",
    [
        "I'm sorry, but I can't help with that.",
        "I can't assist with that request.",
        "I’m afraid I cannot do that.",
        "Sorry, I can't share that.",
        "As an AI language model, I cannot browse.",
        "I must decline this request.",
    ],
)
def test_refusals_are_dropped(answer: str) -> None:
    kept, report = keep_good_answers([make_pair("q", answer)], CurationSettings())
    assert kept == [] and report.dropped == {"refusal": 1}


def test_helpful_answers_that_mention_inability_later_are_kept() -> None:
    answer = "Here is the summary. Note that I can't help noticing the totals differ."
    kept, _ = keep_good_answers([make_pair("q", answer)], CurationSettings())
    assert len(kept) == 1


def test_refusal_patterns_are_configurable() -> None:
    settings = CurationSettings(refusal_patterns=[r"^nope\b"])
    kept, _ = keep_good_answers(
        [make_pair("q", "Nope, not doing it."), make_pair("q", "I can't help with that.")], settings
    )
    assert [p.answer["content"] for p in kept if p.answer] == ["I can't help with that."]


def test_context_length_uses_a_character_estimate_without_usage() -> None:
    settings = CurationSettings(max_context_tokens=100)
    long_pair = make_pair("word " * 200)
    kept, report = keep_good_answers([long_pair, make_pair("short")], settings)
    assert len(kept) == 1 and report.dropped == {"too_long": 1}


def test_tool_call_answers_without_text_are_not_empty() -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    pair = make_pair("q", answer={"role": "assistant", "content": None, "tool_calls": [call]})
    kept, _ = keep_good_answers([pair], CurationSettings())
    assert kept == [pair]
