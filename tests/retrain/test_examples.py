from __future__ import annotations

import json
from typing import Any

import torch

from retrain.examples import IGNORE, align_teacher_logprobs, build_example, collate, row_prompt
from retrain.students import prompt_ids
from tests.retrain.triage_task import make_row


def test_mask_covers_exactly_the_answer_and_eos(tokenizer: Any, triage_rows: list[dict]) -> None:
    row = triage_rows[0]
    example = build_example(tokenizer, row, max_length=512)
    assert example is not None
    prompt = prompt_ids(tokenizer, row_prompt(row))
    assert example.input_ids[: len(prompt)] == prompt
    assert all(label == IGNORE for label in example.labels[: len(prompt)])
    answer = [t for t in example.labels if t != IGNORE]
    assert answer[-1] == tokenizer.eos_token_id
    assert tokenizer.decode(answer[:-1]) == row["answer_text"]
    # The prompt holds the user's words and no part of the answer.
    assert "priority" not in tokenizer.decode(prompt).split("<|assistant|>")[-1]


def test_rows_without_weight_or_answer_are_skipped(tokenizer: Any) -> None:
    row = make_row(0, "refund 1", {"intent": "refund", "priority": "medium"})
    assert build_example(tokenizer, {**row, "weight": 0.0}, 512) is None
    assert build_example(tokenizer, {**row, "answer_text": ""}, 512) is None
    example = build_example(tokenizer, {**row, "weight": 2.5}, 512)
    assert example is not None and example.weight == 2.5


def test_long_prompts_keep_their_end_and_the_whole_answer(tokenizer: Any) -> None:
    row = make_row(0, "word " * 200 + "refund 1", {"intent": "refund", "priority": "medium"})
    example = build_example(tokenizer, row, max_length=64)
    assert example is not None and len(example.input_ids) == 64
    answer = [t for t in example.labels if t != IGNORE]
    assert tokenizer.decode(answer[:-1]) == row["answer_text"]


def test_digits_are_single_tokens(tokenizer: Any) -> None:
    ids = tokenizer("order 12345", add_special_tokens=False)["input_ids"]
    assert [tokenizer.decode([i]) for i in ids][-5:] == ["1", "2", "3", "4", "5"]


def _teacher_logprobs(tokenizer: Any, text: str) -> str:
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    entries = []
    for i in ids:
        token = tokenizer.decode([i])
        tops = [{"token": token, "logprob": -0.1}, {"token": "medium", "logprob": -2.5}]
        entries.append({"token": token, "logprob": -0.1, "top_logprobs": tops})
    return json.dumps(entries)


def test_teacher_logprobs_map_onto_student_tokens(tokenizer: Any) -> None:
    row = make_row(0, "refund 1", {"intent": "refund", "priority": "medium"})
    row["teacher_logprobs"] = _teacher_logprobs(tokenizer, row["answer_text"])
    example = build_example(tokenizer, row, 512)
    assert example is not None and example.soft_ids is not None
    assert example.soft_logprobs is not None
    answer_positions = [i for i, t in enumerate(example.labels) if t != IGNORE]
    # Every answer token but EOS has the teacher's distribution, prompt positions none.
    assert all(example.soft_ids[i] for i in answer_positions[:-1])
    assert not any(example.soft_ids[: answer_positions[0]])
    first = answer_positions[0]
    assert example.soft_ids[first][0] == example.input_ids[first]
    batch = collate([example], tokenizer.pad_token_id)
    assert batch["soft_ids"].shape[:2] == batch["input_ids"].shape


def test_logprobs_of_another_tokenizer_are_not_used(tokenizer: Any) -> None:
    answer_ids = tokenizer('{"a": 1}', add_special_tokens=False)["input_ids"]
    foreign = json.dumps([{"token": '{"a', "logprob": 0.0, "top_logprobs": []}])
    assert align_teacher_logprobs(tokenizer, answer_ids, foreign) is None
    assert align_teacher_logprobs(tokenizer, answer_ids, None) is None


def test_collate_pads_right_and_masks_padding(tokenizer: Any, triage_rows: list[dict]) -> None:
    examples = [build_example(tokenizer, r, 512) for r in triage_rows[:4]]
    batch = collate([e for e in examples if e], tokenizer.pad_token_id)
    lengths = batch["attention_mask"].sum(1)
    for i, n in enumerate(lengths.tolist()):
        assert torch.all(batch["labels"][i, n:] == IGNORE)
        assert torch.all(batch["input_ids"][i, n:] == tokenizer.pad_token_id)
    assert "soft_ids" not in batch


def test_long_answers_leave_the_prompt_a_quarter_of_the_room(tokenizer: Any) -> None:
    row = make_row(0, "refund 1", {"intent": "refund", "priority": "medium"})
    row["answer_text"] = "refund " * 100
    example = build_example(tokenizer, row, max_length=64)
    assert example is not None and len(example.input_ids) == 64
    assert sum(t != IGNORE for t in example.labels) == 64 - 16
