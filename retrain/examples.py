"""Training examples: dataset rows in, token ids with an assistant-only loss mask out.

The prompt is rendered as serving renders it (`retrain.students.prompt_ids`: the base's chat
template, generation prompt included) and tokenised on its own; the teacher's answer and EOS
are tokenised after it. Tokenising the two pieces apart makes the mask exact and gives the
model the very prompt ids it will see at generation time.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import torch

from curation.dataset import dataset_dir
from retrain.students import Prompt, prompt_ids

IGNORE = -100  # label of tokens that carry no loss (prompt, padding)


@dataclass(frozen=True)
class Example:
    input_ids: list[int]
    labels: list[int]  # IGNORE on prompt tokens, the token id on answer tokens
    weight: float
    # Teacher top-k per input position (empty lists off the answer), or None without logprobs.
    soft_ids: list[list[int]] | None = None
    soft_logprobs: list[list[float]] | None = None


def read_split(data_dir: Path, route: str, version: int, split: str) -> list[dict[str, Any]]:
    """Rows of ``train`` or ``eval`` of a dataset version, as dicts."""
    path = dataset_dir(data_dir, route, version) / f"{split}.parquet"
    rows: list[dict[str, Any]] = pq.read_table(path).to_pylist()
    return rows


def row_prompt(row: dict[str, Any]) -> Prompt:
    """A dataset row's prompt: its messages and the tools it offered."""
    tools = json.loads(row["tools"]) if row.get("tools") else None
    return Prompt(json.loads(row["messages"]), tools)


def build_example(tokenizer: Any, row: dict[str, Any], max_length: int) -> Example | None:
    """One training example, or None when the row carries no weight or no answer."""
    weight = 1.0 if row.get("weight") is None else float(row["weight"])
    answer = row.get("answer_text") or ""
    if weight <= 0 or not answer:
        return None
    prompt = prompt_ids(tokenizer, row_prompt(row))
    answer_ids = tokenizer(answer, add_special_tokens=False)["input_ids"]
    # Too long: the answer keeps all but a quarter of the room (its EOS teaches stopping), and
    # the prompt keeps its end (the user's latest words).
    target = [*answer_ids, tokenizer.eos_token_id]
    target = target[: max_length - min(len(prompt), max_length // 4)]
    prompt = prompt[max(0, len(prompt) + len(target) - max_length) :]
    ids = prompt + target
    labels = [IGNORE] * len(prompt) + target
    soft = align_teacher_logprobs(tokenizer, answer_ids, row.get("teacher_logprobs"))
    if soft is None:
        return Example(ids, labels, weight)
    pad: list[list[Any]] = [[] for _ in prompt]
    soft_ids = (pad + soft[0] + [[]])[: len(ids)]
    soft_lps = (pad + soft[1] + [[]])[: len(ids)]
    return Example(ids, labels, weight, soft_ids, soft_lps)


def align_teacher_logprobs(
    tokenizer: Any, answer_ids: list[int], logprobs_json: str | None
) -> tuple[list[list[int]], list[list[float]]] | None:
    """Map the teacher's top logprobs onto student token ids, or None when they do not map.

    They map only when the teacher's sampled tokens are exactly the student's tokens of the
    answer (same tokenizer family); a top-k alternative that is not one student token is left
    out of that position's distribution.
    """
    if not logprobs_json:
        return None
    entries = json.loads(logprobs_json)
    if not isinstance(entries, list) or len(entries) != len(answer_ids):
        return None
    student_tokens = [tokenizer.decode([i]) for i in answer_ids]
    if [e.get("token") for e in entries] != student_tokens:
        return None
    ids_out: list[list[int]] = []
    lps_out: list[list[float]] = []
    for entry in entries:
        ids, lps = [], []
        for alt in entry.get("top_logprobs") or [entry]:
            alt_ids = tokenizer(alt["token"], add_special_tokens=False)["input_ids"]
            if len(alt_ids) == 1 and alt_ids[0] not in ids:
                ids.append(alt_ids[0])
                lps.append(float(alt["logprob"]))
        ids_out.append(ids)
        lps_out.append(lps)
    return ids_out, lps_out


def collate(examples: list[Example], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded batch; soft-target tensors only when some example has them."""
    width = max(len(e.input_ids) for e in examples)
    batch = len(examples)
    input_ids = torch.full((batch, width), pad_id, dtype=torch.long)
    labels = torch.full((batch, width), IGNORE, dtype=torch.long)
    attention = torch.zeros((batch, width), dtype=torch.long)
    for i, e in enumerate(examples):
        n = len(e.input_ids)
        input_ids[i, :n] = torch.tensor(e.input_ids)
        labels[i, :n] = torch.tensor(e.labels)
        attention[i, :n] = 1
    out = {
        "input_ids": input_ids,
        "attention_mask": attention,
        "labels": labels,
        "weights": torch.tensor([e.weight for e in examples], dtype=torch.float32),
    }
    if any(e.soft_ids is not None for e in examples):
        out.update(_collate_soft(examples, width))
    return out


def _collate_soft(examples: list[Example], width: int) -> dict[str, torch.Tensor]:
    k = max((len(ids) for e in examples for ids in e.soft_ids or []), default=1) or 1
    soft_ids = torch.zeros((len(examples), width, k), dtype=torch.long)
    soft_lps = torch.zeros((len(examples), width, k), dtype=torch.float32)
    soft_mask = torch.zeros((len(examples), width, k), dtype=torch.bool)
    for i, e in enumerate(examples):
        for t, (ids, lps) in enumerate(zip(e.soft_ids or [], e.soft_logprobs or [], strict=True)):
            soft_ids[i, t, : len(ids)] = torch.tensor(ids, dtype=torch.long)
            soft_lps[i, t, : len(lps)] = torch.tensor(lps, dtype=torch.float32)
            soft_mask[i, t, : len(ids)] = True
    return {"soft_ids": soft_ids, "soft_logprobs": soft_lps, "soft_mask": soft_mask}
