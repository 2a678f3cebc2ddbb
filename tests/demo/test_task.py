from __future__ import annotations

import json
import random
import re
from collections import Counter

import pytest

from demo import task


def test_answer_is_compact_json_with_fixed_key_order() -> None:
    answer = task.teacher_answer("Please cancel order A12345, this is urgent.")
    assert answer == '{"intent":"cancel_order","priority":"high"}'
    assert list(json.loads(answer)) == ["intent", "priority"]


def test_answers_are_deterministic_and_short() -> None:
    messages = task.sample_messages(random.Random(3), 400, "shifted")
    for m in messages:
        answer = task.teacher_answer(m)
        assert answer == task.teacher_answer(m)
        assert json.loads(answer)["intent"] in task.intents("shifted")
        assert len(answer) <= 60  # a tiny student must learn it exactly


def test_sampling_is_reproducible_from_the_seed() -> None:
    a = task.sample_messages(random.Random(9), 50, "base")
    assert a == task.sample_messages(random.Random(9), 50, "base")
    assert a != task.sample_messages(random.Random(10), 50, "base")


@pytest.mark.parametrize("phase", ["base", "shifted"])
def test_generator_labels_agree_with_the_rules(phase: task.Phase) -> None:
    for s in task.sample_labelled(random.Random(1), 3000, phase):
        assert task.classify(s.text) == (s.intent, s.priority), s.text


def test_every_template_classifies_as_its_intent_without_urgency() -> None:
    for intent, templates in task.all_templates().items():
        for template in templates:
            text = template.format(o="A12345", p="blender", a="25", d="Monday", c="Leeds", n="Tom")
            got_intent, priority = task.classify(text)
            assert got_intent == intent, text
            assert priority != "high" or intent in task.RARE_INTENTS, text


@pytest.mark.parametrize(
    ("message", "priority"),
    [
        ("Why was I billed $1200 for the blender?", "high"),
        ("Why was I billed $999.99 for the blender?", "normal"),
        ("Is the blender available in black?", "low"),
        ("Is the blender available in black? Please help ASAP.", "high"),
        ("I cannot log in again.", "high"),
        ("There is an unauthorized order on my account.", "high"),
    ],
)
def test_priority_rule(message: str, priority: str) -> None:
    assert json.loads(task.teacher_answer(message))["priority"] == priority


def test_base_never_has_the_new_intent_and_shifted_has_it() -> None:
    base = Counter(s.intent for s in task.sample_labelled(random.Random(2), 4000, "base"))
    shifted = Counter(s.intent for s in task.sample_labelled(random.Random(2), 4000, "shifted"))
    assert task.NEW_INTENT not in base
    assert task.NEW_INTENT not in task.intents("base")
    assert shifted[task.NEW_INTENT] / 4000 > 0.15
    assert set(base) == set(task.intents("base"))


def test_rare_intents_are_a_few_percent() -> None:
    counts = Counter(s.intent for s in task.sample_labelled(random.Random(4), 10000, "base"))
    for intent in task.RARE_INTENTS:
        assert 0.01 < counts[intent] / 10000 < 0.05
    for intent in task.COMMON_INTENTS:
        assert counts[intent] / 10000 > 0.08


def _words(texts: list[str]) -> Counter[str]:
    return Counter(w for t in texts for w in re.findall(r"[a-z]+", t.lower()))


def test_shifted_traffic_brings_new_vocabulary_and_longer_prompts() -> None:
    base = task.sample_messages(random.Random(5), 2000, "base")
    shifted = task.sample_messages(random.Random(5), 2000, "shifted")
    seen = _words(base)
    new = _words(shifted)
    unseen = sum(n for w, n in new.items() if w not in seen) / sum(new.values())
    assert unseen > 0.1
    assert sum(map(len, shifted)) / len(shifted) > 1.3 * sum(map(len, base)) / len(base)


def test_unknown_phase_is_refused() -> None:
    with pytest.raises(ValueError, match="phase"):
        task.sample_messages(random.Random(0), 1, "weekend")  # type: ignore[arg-type]


def test_chat_has_the_fixed_system_prompt() -> None:
    chat = task.chat_messages("Where is my order?")
    assert chat[0] == {"role": "system", "content": task.SYSTEM_PROMPT}
    assert chat[1] == {"role": "user", "content": "Where is my order?"}
