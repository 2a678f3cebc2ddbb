from __future__ import annotations

import json
from typing import Any

import pytest
import torch
from transformers import LlamaForCausalLM

from retrain.examples import build_example, collate
from retrain.settings import RetrainSettings
from retrain.tiny_base import tiny_config
from retrain.train import batch_loss, lr_at
from tests.retrain.triage_task import make_row


def test_learning_rate_warms_up_then_decays_to_a_tenth() -> None:
    s = RetrainSettings(max_steps=100, warmup_steps=10)
    assert lr_at(0, s) == pytest.approx(0.1)
    assert lr_at(9, s) == pytest.approx(1.0)
    assert lr_at(10, s) == pytest.approx(1.0)
    assert lr_at(100, s) == pytest.approx(0.1)
    assert lr_at(55, s) == pytest.approx(0.55)


def test_batch_loss_adds_the_soft_term_only_with_teacher_logprobs(tokenizer: Any) -> None:
    torch.manual_seed(0)
    settings = RetrainSettings(tiny_hidden_size=32, distill_alpha=0.5)
    config = tiny_config(len(tokenizer), settings, tokenizer.pad_token_id, tokenizer.eos_token_id)
    model = LlamaForCausalLM(config)
    row = make_row(0, "refund 1", {"intent": "refund", "priority": "medium"})
    ids = tokenizer(row["answer_text"], add_special_tokens=False)["input_ids"]
    entries = []
    for i in ids:
        token = tokenizer.decode([i])
        entries.append(
            {
                "token": token,
                "logprob": -0.2,
                "top_logprobs": [
                    {"token": token, "logprob": -0.2},
                    {"token": "high", "logprob": -1.8},
                ],
            }
        )
    plain = build_example(tokenizer, row, 512)
    soft = build_example(tokenizer, {**row, "teacher_logprobs": json.dumps(entries)}, 512)
    assert plain is not None and soft is not None
    ce = batch_loss(model, collate([plain], tokenizer.pad_token_id), settings)
    mixed = batch_loss(model, collate([soft], tokenizer.pad_token_id), settings)
    assert torch.isfinite(mixed) and float(mixed) != pytest.approx(float(ce))
    off = settings.model_copy(update={"distill_alpha": 0.0})
    assert float(batch_loss(model, collate([soft], tokenizer.pad_token_id), off)) == (
        pytest.approx(float(ce))
    )
    mixed.backward()  # gradients flow through the soft term
    assert model.model.embed_tokens.weight.grad is not None
