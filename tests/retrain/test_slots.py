from __future__ import annotations

import json

from retrain.slots import (
    Slots,
    build_slots,
    delexicalize_answer,
    delexicalize_messages,
    delexicalize_row,
    read_slots,
    relexicalize,
    route_slots,
    save_slots,
)
from tests.retrain.copy_tasks import (
    extraction_rows,
    novel_extraction_rows,
    novel_ticket_rows,
    ticket_rows,
)
from tests.retrain.triage_task import make_rows

TEMPLATE = Slots(
    frozenset(
        [
            "hi",
            "this",
            "is",
            "please",
            "send",
            "boxes",
            "of",
            "to",
            "the",
            "my",
            "stopped",
            "working",
        ]
    )
)


def test_runs_of_words_outside_the_template_become_slots() -> None:
    values: list[str] = []
    messages = [
        {"role": "system", "content": "Extract the order."},
        {"role": "user", "content": "Hi, this is Ingrid Lindqvist, please send 40 boxes of "
                                    "basmati rice to Zaragoza."},
    ]  # fmt: skip
    out, values = delexicalize_messages(messages, TEMPLATE)
    assert out[0] == messages[0]  # the system prompt is the route's own, never slotted
    # the template in lower case: the markers carry what the answer needs
    assert out[1]["content"] == "hi, this is ⟦1⟧, please send ⟦2⟧ boxes of ⟦3⟧ to ⟦4⟧."
    assert values == ["Ingrid Lindqvist", "40", "basmati rice", "Zaragoza"]


def test_letters_and_digits_are_separate_slots_and_a_repeat_reuses_its_slot() -> None:
    _, values = delexicalize_messages(
        [{"role": "user", "content": "my Kraxel Juicer 3000 stopped working, kraxel juicer"}],
        TEMPLATE,
    )
    assert values == ["Kraxel Juicer", "3000"]
    answer = delexicalize_answer("HIGH | Kraxel Juicer 3000 | hardware", values)
    assert answer == "HIGH | ⟦1:t⟧ ⟦2:d⟧ | hardware"
    assert relexicalize(answer, values) == "HIGH | Kraxel Juicer 3000 | hardware"


def test_the_answer_keeps_the_case_it_writes_a_slot_in() -> None:
    values = ["MARTA KOWALSKI", "ARABICA BEANS", "3"]
    answer = '{"name": "Marta Kowalski", "item": "arabica beans", "qty": 3}'
    slotted = delexicalize_answer(answer, values)
    assert slotted == '{"name": "⟦1:t⟧", "item": "⟦2:l⟧", "qty": ⟦3:d⟧}'
    # the same answer for a message in any case: the marker says the answer's form
    assert delexicalize_answer(answer, ["marta kowalski", "Arabica Beans", "three"]) == slotted
    assert relexicalize(slotted, ["ZAINAB OKONKWO", "SEA SALT", "twelve"]) == (
        '{"name": "Zainab Okonkwo", "item": "sea salt", "qty": 12}'
    )


def test_a_digit_value_never_matches_inside_a_marker() -> None:
    assert delexicalize_answer("Lyon 1", ["Lyon", "1"]) == "⟦1:t⟧ ⟦2:d⟧"
    # "one" and "1" both say 1: the answer's 1 is the value written exactly so
    assert delexicalize_answer("1", ["one", "1"]) == "⟦2:d⟧"


def test_a_marker_the_prompt_lacks_is_refused() -> None:
    assert relexicalize("⟦3⟧", ["a", "b"]) is None
    assert relexicalize("no markers", []) == "no markers"


def test_only_routes_whose_answers_copy_get_slots() -> None:
    assert route_slots(make_rows(200, seed=1), "auto", "tiny") is None  # triage classifies
    assert route_slots(extraction_rows(200, seed=1), "auto", "/models/qwen") is None
    assert route_slots(extraction_rows(200, seed=1), "off", "tiny") is None
    slots = route_slots(extraction_rows(400, seed=1), "auto", "tiny")
    assert slots is not None
    assert {"please", "send", "boxes"} <= slots.template
    assert not {"marta", "kowalski", "porto", "beans"} & slots.template


def test_unseen_entities_round_trip_through_the_training_form() -> None:
    for rows, novel in (
        (extraction_rows(600, seed=1), novel_extraction_rows(200, seed=2)),
        (ticket_rows(600, seed=1), novel_ticket_rows(200, seed=2)),
    ):
        slots = route_slots(rows, "auto", "tiny")
        assert slots is not None
        for row in novel:
            slotted = delexicalize_row(row, slots)
            _, values = delexicalize_messages(json.loads(row["messages"]), slots)
            assert "⟦" in slotted["answer_text"]
            # the student's perfect answer, filled in, is the teacher's
            assert relexicalize(slotted["answer_text"], values) == row["answer_text"]


def test_slots_are_saved_beside_the_student(tmp_path) -> None:  # type: ignore[no-untyped-def]
    assert read_slots(tmp_path) is None
    save_slots(tmp_path, TEMPLATE)
    assert read_slots(tmp_path) == TEMPLATE
    assert build_slots(["a b"], [[]]) is None


def test_a_template_word_that_never_followed_a_name_belongs_to_it() -> None:
    rows = extraction_rows(600, seed=1)
    slots = route_slots(rows, "auto", "tiny")
    assert slots is not None and "bags" in slots.template and "bags" not in slots.follows
    assert {"to", "here", "sent"} <= slots.follows
    text = "My name is Ingrid Lindqvist and I would like 3 bags of bin bags sent to Dundee"
    _, values = delexicalize_messages([{"role": "user", "content": text}], slots)
    assert values == ["Ingrid Lindqvist", "3", "bin bags", "Dundee"]
