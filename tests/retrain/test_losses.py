from __future__ import annotations

import math

import pytest
import torch

from retrain.losses import (
    IGNORE,
    distillation_loss,
    soft_target_loss,
    topk_kl,
    weighted_cross_entropy,
)


def test_kl_is_zero_for_identical_distributions() -> None:
    logits = torch.tensor([[2.0, 0.5, -1.0, 0.0]])
    ids = torch.tensor([[0, 1, 2]])
    teacher = torch.log_softmax(logits[:, :3], dim=-1)
    mask = torch.ones_like(ids, dtype=torch.bool)
    assert float(topk_kl(logits, ids, teacher, mask)) == pytest.approx(0.0, abs=1e-6)


def test_kl_matches_a_hand_computed_value() -> None:
    # Teacher 0.75/0.25 on tokens 0/1; the student is uniform over them (token 2 is outside
    # the top-k and drops out after renormalisation).
    # KL = 0.75 ln(0.75/0.5) + 0.25 ln(0.25/0.5) = 0.130812...
    logits = torch.tensor([[1.0, 1.0, 5.0]])
    ids = torch.tensor([[0, 1]])
    teacher = torch.log(torch.tensor([[0.75, 0.25]]))
    mask = torch.ones_like(ids, dtype=torch.bool)
    expected = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)
    assert float(topk_kl(logits, ids, teacher, mask)) == pytest.approx(expected, abs=1e-6)


def test_masked_entries_and_empty_rows_are_ignored() -> None:
    logits = torch.tensor([[1.0, 1.0, 5.0], [0.0, 0.0, 0.0]])
    ids = torch.tensor([[0, 1, 2], [0, 0, 0]])
    teacher = torch.log(torch.tensor([[0.75, 0.25, 0.5], [1.0, 1.0, 1.0]]))
    mask = torch.tensor([[True, True, False], [False, False, False]])
    kl = topk_kl(logits, ids, teacher, mask)
    assert float(kl[0]) == pytest.approx(0.75 * math.log(1.5) + 0.25 * math.log(0.5), abs=1e-6)
    assert float(kl[1]) == 0.0


def test_gradient_pushes_student_towards_teacher() -> None:
    logits = torch.zeros((1, 3), requires_grad=True)
    ids = torch.tensor([[0, 1]])
    teacher = torch.log(torch.tensor([[0.9, 0.1]]))
    mask = torch.ones_like(ids, dtype=torch.bool)
    topk_kl(logits, ids, teacher, mask).sum().backward()
    assert logits.grad is not None
    # Descending the gradient raises the logit the teacher prefers and lowers the other.
    assert logits.grad[0, 0] < 0 < logits.grad[0, 1]


def test_temperature_softens_both_sides() -> None:
    logits = torch.tensor([[3.0, 0.0]])
    ids = torch.tensor([[0, 1]])
    teacher = torch.log(torch.tensor([[0.5, 0.5]]))
    mask = torch.ones_like(ids, dtype=torch.bool)
    cold = float(topk_kl(logits, ids, teacher, mask, temperature=1.0))
    warm = float(topk_kl(logits, ids, teacher, mask, temperature=4.0))
    assert warm < cold


def test_distillation_loss_mixes_terms() -> None:
    ce, kl = torch.tensor(2.0), torch.tensor(0.5)
    assert float(distillation_loss(ce, kl, alpha=0.0, temperature=2.0)) == 2.0
    assert float(distillation_loss(ce, kl, alpha=1.0, temperature=2.0)) == 2.0  # 4 * 0.5
    assert float(distillation_loss(ce, kl, alpha=0.5, temperature=1.0)) == pytest.approx(1.25)


def test_cross_entropy_counts_only_labelled_tokens_and_weights_sequences() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 5)
    labels = torch.tensor([[IGNORE, IGNORE, 3, 1], [IGNORE, 2, IGNORE, IGNORE]])
    per_token = torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, 5),
        labels[:, 1:].reshape(-1),
        ignore_index=IGNORE,
        reduction="none",
    ).view(2, 3)
    a = per_token[0, 1] + per_token[0, 2]  # sequence 0's two answer tokens
    b = per_token[1, 0]  # sequence 1's one answer token
    got = weighted_cross_entropy(logits, labels, torch.tensor([1.0, 3.0]))
    assert float(got) == pytest.approx(float((a + 3 * b) / 5), abs=1e-6)
    # A zero-weight sequence contributes nothing.
    only_first = weighted_cross_entropy(logits, labels, torch.tensor([1.0, 0.0]))
    assert float(only_first) == pytest.approx(float(a / 2), abs=1e-6)


def test_soft_target_loss_shifts_like_labels() -> None:
    # Teacher targets sit at position 1; the logits that predict them are at position 0.
    logits = torch.zeros(1, 2, 3)
    logits[0, 0] = torch.tensor([0.0, 0.0, 0.0])
    logits[0, 1] = torch.tensor([9.0, -9.0, 0.0])  # would give a large KL if (wrongly) used
    ids = torch.tensor([[[0, 0], [0, 1]]])
    lps = torch.log(torch.tensor([[[1.0, 1.0], [0.5, 0.5]]]))
    mask = torch.tensor([[[False, False], [True, True]]])
    got = soft_target_loss(logits, ids, lps, mask, torch.ones(1), temperature=1.0)
    assert float(got) == pytest.approx(0.0, abs=1e-6)
