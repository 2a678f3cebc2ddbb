from __future__ import annotations

import json

import pytest

from curation.spans import NAME, NUMBER, WORD, Span, find_spans, spans_from_json, tokens
from tests.retrain.triage_task import ITEMS, NAMES, make_rows


def triage_texts(n: int = 2000) -> list[str]:
    return [json.loads(r["messages"])[-1]["content"] for r in make_rows(n, seed=0)]


def found(texts: list[str], detectors: list[str], kind: str) -> set[str]:
    return {s.text for row in find_spans(texts, detectors) for s in row if s.kind == kind}


def test_tokens_keep_ids_and_amounts_whole() -> None:
    assert tokens("Order Q74131 cost $497.70, ok?") == [
        "Order", "Q74131", "cost", "$", "497.70", ",", "ok", "?"]  # fmt: skip


def test_capitalised_finds_names_not_sentence_starts_or_emphasis() -> None:
    texts = ["Where is my parcel? Ana sent it.", "where is it", "please ask Ana", "ASAP please",
             "Please call New York", "Hello there"]  # fmt: skip
    assert found(texts, ["capitalised"], NAME) == {"Ana", "New York"}


def test_numbers_need_three_digits() -> None:
    texts = ["order 48213 and the 2fa code", "I paid $1,200.50 for 4K monitors"]
    assert found(texts, ["numbers"], NUMBER) == {"48213", "1,200.50"}


def test_slot_words_find_the_triage_items_and_no_template_word() -> None:
    texts = triage_texts()
    words = found(texts, ["slot_words"], WORD)
    assert words <= set(ITEMS)  # no template word ("waterproof", "password", ...)
    assert len(words) >= 7
    # rare_words alone cannot tell items from words of rare templates
    rare = found(texts, ["rare_words"], WORD)
    assert set(ITEMS) - {"phone case"} <= rare and len(rare - set(ITEMS)) > 20


def test_capitalised_finds_every_triage_name() -> None:
    assert found(triage_texts(), ["capitalised"], NAME) == set(NAMES)


def test_spans_are_unique_per_text_and_round_trip_as_json() -> None:
    (row,) = find_spans(["Ana and Ana again, Ana"] + ["ask Ana"] * 3, ["capitalised"])[:1]
    assert row == [Span(NAME, "Ana")]
    assert spans_from_json([s.to_json() for s in row]) == row
    assert spans_from_json("nonsense") == [] and spans_from_json([["name"]]) == []
    assert row[0].key == "name:ana"


def test_an_unknown_detector_is_named() -> None:
    with pytest.raises(ValueError, match="unknown span detector"):
        find_spans(["x"], ["nouns"])


def test_copied_finds_what_the_answer_copies_in_any_case() -> None:
    texts = [
        "hi, this is marta kowalski, send three boxes of arabica beans to porto",
        "ORDER FOR DIEGO ROSSI: 12 X GREEN TEA, SHIP TO LYON",
    ]
    answers = [
        '{"name": "Marta Kowalski", "item": "arabica beans", "qty": 3, "city": "Porto"}',
        '{"name": "Diego Rossi", "item": "green tea", "qty": 12, "city": "Lyon"}',
    ]
    found = find_spans(texts, ["copied"], answers=answers)
    assert [(s.kind, s.text) for s in found[0]] == [
        (NAME, "marta kowalski"), (NUMBER, "three"), (NAME, "arabica beans"), (NAME, "porto"),
    ]  # fmt: skip
    assert [s.text for s in found[1]] == ["DIEGO ROSSI", "12", "GREEN TEA", "LYON"]
    # one group whatever the case: a lower-cased copy is the same entity
    assert found[0][0].key == Span(NAME, "Marta Kowalski").key


def test_a_label_word_is_not_a_copy() -> None:
    # "refund" is the intent of prompts that never say it: a class, not a copied span
    texts = ["please refund order 123", "I want my money back", "money back for 77", "refund"]
    answers = ['{"intent": "refund"}'] * 4
    assert find_spans(texts, ["copied"], answers=answers) == [[], [], [], []]


def test_copied_needs_the_answers_and_a_digit_said_twice_is_no_number_word() -> None:
    assert find_spans(["send Porto"], ["copied"]) == [[]]
    found = find_spans(["quick one: 1 lamp"], ["copied"], answers=['{"qty": 1}'])
    assert [s.text for s in found[0]] == ["1"]
