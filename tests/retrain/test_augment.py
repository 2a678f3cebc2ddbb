from __future__ import annotations

import json
import random
import re
from typing import Any

from curation.spans import NAME, NUMBER, NUMBER_WORDS, WORD, Span
from retrain.augment import Label, augment, made_up, replace_span, user_text
from retrain.settings import AugmentSettings
from tests.retrain.copy_tasks import extraction_rows
from tests.retrain.triage_task import ITEMS, NAMES, make_row, make_rows


def test_replace_span_replaces_whole_words_in_every_case_form() -> None:
    assert replace_span("Bo met Bob; bo said Bo.", "Bo", "Kai") == "Kai met Bob; kai said Kai."
    assert replace_span("the phone case, a phone cases", "phone case", "mug") == (
        "the mug, a phone cases"
    )
    # each occurrence keeps its own case: the teacher title-cases a name it copies
    assert replace_span("MARTA KOWALSKI / Marta Kowalski", "marta kowalski", "qerv zilpa") == (
        "QERV ZILPA / Qerv Zilpa"
    )


def test_made_up_spans_keep_the_shape_or_take_one_never_seen() -> None:
    rng = random.Random(1)
    assert made_up(Span(NUMBER, "Q74131-09"), rng)[6] == "-"  # a span no answer copies
    numbers = [made_up(Span(NUMBER, "Q74131-09"), rng, novel_shapes=True) for _ in range(40)]
    same = [n for n in numbers if len(n) == 9 and n[0] == "Q" and n[6] == "-"]
    odd = [n for n in numbers if n not in same]
    assert same and odd and all(n.isdigit() and n[0] != "0" for n in odd)
    names = [made_up(Span(NAME, "New York"), rng, novel_shapes=True) for _ in range(40)]
    assert all(w[0].isupper() for n in names for w in n.split() if w[0].isalpha())
    assert any(len(n.split()) != 2 for n in names)  # shapes the route never showed
    words = [made_up(Span(WORD, "kettle"), rng, novel_shapes=True) for _ in range(10)]
    assert all(w == w.lower() for w in words)
    # a number word becomes another number word (the answer's digits follow it)
    assert made_up(Span(NUMBER, "three"), rng) in NUMBER_WORDS


def test_synthetic_rows_replace_spans_and_keep_labels() -> None:
    train = make_rows(300, seed=1)
    out = augment(train, [], AugmentSettings(), seed=0)
    assert out.rows and all(r["synthetic"] for r in out.rows)
    by_id = {r["request_id"]: r for r in train}
    prompts = {user_text(r) for r in train}
    for row in out.rows:
        origin = by_id[row["request_id"].split("~")[0]]
        assert user_text(row) != user_text(origin) and user_text(row) not in prompts
        assert row["answer_text"] == origin["answer_text"]  # triage labels ignore names
        assert row["slice"] is None and row["teacher_logprobs"] is None
    assert out.kinds[NAME] and out.kinds[WORD] and out.kinds[NUMBER]
    counts = out.counts(AugmentSettings())
    assert counts["synthetic_rows"] == len(out.rows) and counts["teacher_calls"] == 0


def test_a_span_copied_into_the_answer_is_replaced_there_too() -> None:
    rows = [make_row(i, f"find the account of {n}", {"intent": "lookup", "name": n})
            for i, n in enumerate(NAMES * 3)]  # fmt: skip
    out = augment(rows, [], AugmentSettings(copies=2), seed=3)
    assert out.rows
    for row in out.rows:
        name = json.loads(row["answer_text"])["name"]
        assert name not in NAMES and user_text(row) == f"find the account of {name}"


def test_substitutes_never_show_what_eval_holds() -> None:
    train = make_rows(300, seed=1)
    held = [make_row(10_000 + i, f"the {item} arrived broken", {"intent": "damaged_item"})
            for i, item in enumerate(ITEMS[:4])]  # fmt: skip
    out = augment(train, held, AugmentSettings(vocabulary="route", copies=3), seed=0)
    text = " ".join(user_text(r) for r in out.rows)
    # the eval rows name four items; no synthetic row may name one the train rows lack
    assert out.rows and not any(f" {item} " in f" {text} " for item in ITEMS[:4])


def test_teacher_relabels_within_the_budget() -> None:
    train = make_rows(100, seed=1)
    asked: list[list[dict[str, Any]]] = []

    def teacher(messages: list[dict[str, Any]]) -> Label:
        asked.append(messages)
        return Label('{"intent": "relabelled"}', 0.01)

    settings = AugmentSettings(relabel="teacher", teacher_budget_usd=0.05)
    out = augment(train, [], settings, seed=0, relabel=teacher)
    assert len(asked) == 5 == out.teacher_calls == len(out.rows)
    assert all(r["answer_text"] == '{"intent": "relabelled"}' for r in out.rows)
    assert out.dropped["over_teacher_budget"] > 0
    assert abs(out.teacher_cost_usd - 0.05) < 1e-9


def test_off_means_no_rows() -> None:
    assert augment(make_rows(50, seed=1), [], AugmentSettings(enabled=False)).rows == []


def test_copied_spans_are_replaced_with_the_answers_case_and_number_words_with_digits() -> None:
    rows = extraction_rows(300, seed=1)
    out = augment(rows, [], AugmentSettings(), seed=0)
    assert out.rows
    for row in out.rows:
        answer = json.loads(row["answer_text"])
        text = user_text(row)
        # whatever replaced the name, the answer holds it title-cased, as the teacher would
        assert answer["name"].casefold() in text.casefold()
        assert answer["name"] == answer["name"].title()
        words = re.findall(r"\w+", text.casefold())
        assert str(answer["qty"]) in text or NUMBER_WORDS[answer["qty"]] in words
