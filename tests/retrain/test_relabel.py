"""The teacher relabelling synthetic prompts: a real HTTP call to the fake teacher, priced."""

from __future__ import annotations

from typing import Any

from retrain.augment import augment
from retrain.relabel import TeacherRelabel
from retrain.settings import AugmentSettings
from tests.fakes.teacher import FakeTeacher
from tests.retrain.triage_task import make_rows


def test_the_teacher_answers_synthetic_prompts_and_each_call_is_priced() -> None:
    def answer(body: dict[str, Any]) -> str:
        return '{"intent": "relabelled: ' + body["messages"][-1]["content"][:10] + '"}'

    with FakeTeacher(answer=answer) as teacher:
        prices = {"input_cost_per_mtok": 1000.0, "output_cost_per_mtok": 2000.0}
        relabel = TeacherRelabel("openai/fake-teacher-1", "sk-teacher", teacher.base_url, **prices)
        settings = AugmentSettings(relabel="teacher", teacher_budget_usd=0.5)
        out = augment(make_rows(200, seed=1), [], settings, seed=0, relabel=relabel)
        asked = list(teacher.received)
    assert out.rows and out.teacher_calls == len(asked) == len(out.rows)
    assert asked[0].headers["authorization"] == "Bearer sk-teacher"
    assert asked[0].body["model"] == "fake-teacher-1"
    for row, request in zip(out.rows, asked, strict=True):
        assert row["answer_text"] == answer(request.body)  # the teacher's, not a copy
    # priced from the teacher's usage at the route's prices, and stopped at the budget
    assert 0.5 <= out.teacher_cost_usd < 0.5 + out.teacher_cost_usd / out.teacher_calls
    assert out.dropped["over_teacher_budget"] > 0
    assert out.counts(settings)["labelled_by"] == "teacher"


def test_cost_uses_the_route_prices() -> None:
    relabel = TeacherRelabel("openai/x", input_cost_per_mtok=1.0, output_cost_per_mtok=4.0)
    assert relabel.cost({"prompt_tokens": 1_000_000, "completion_tokens": 500_000}) == 3.0
