"""Distillation losses as pure functions of tensors, so tests can call them directly.

Sequence-level distillation is cross-entropy on the teacher's answer tokens, each sequence
weighted by its feedback weight. When the teacher's top-k logprobs map onto the student's
vocabulary, a soft-target term joins it:

    L = alpha * T^2 * KL(p_teacher || p_student) + (1 - alpha) * CE

The KL is taken over the teacher's top-k support only (both distributions renormalised over
those k tokens), because that is all the teacher's API tells us. T^2 keeps the gradient scale of
the soft term independent of the temperature (Hinton et al., 2015).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE = -100


def weighted_cross_entropy(
    logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor
) -> torch.Tensor:
    """Mean next-token CE over labelled tokens, each sequence's tokens scaled by its weight.

    logits [B, T, V] predict labels shifted by one; labels [B, T] with IGNORE off the answer;
    weights [B]. Normalised by the weighted token count so the loss scale does not depend on
    the weights' scale.
    """
    logits, labels = logits[:, :-1], labels[:, 1:]
    token_ce = F.cross_entropy(
        logits.reshape(-1, logits.size(-1)).float(),
        labels.reshape(-1),
        ignore_index=IGNORE,
        reduction="none",
    ).view(labels.shape)
    mask = (labels != IGNORE).float()
    token_weights = mask * weights.view(-1, 1).float()
    return (token_ce * token_weights).sum() / token_weights.sum().clamp_min(1e-8)


def topk_kl(
    student_logits: torch.Tensor,
    teacher_ids: torch.Tensor,
    teacher_logprobs: torch.Tensor,
    mask: torch.Tensor,
    temperature: float = 1.0,
) -> torch.Tensor:
    """KL(p_teacher || p_student) per position over the teacher's top-k tokens.

    student_logits [N, V]; teacher_ids, teacher_logprobs, mask [N, K] (mask marks real entries).
    Returns [N]; rows without any entry give 0.
    """
    neg_inf = torch.finfo(torch.float32).min
    t_logits = (teacher_logprobs.float() / temperature).masked_fill(~mask, neg_inf)
    s_logits = torch.gather(student_logits.float() / temperature, -1, teacher_ids)
    s_logits = s_logits.masked_fill(~mask, neg_inf)
    t_logp = F.log_softmax(t_logits, dim=-1)
    s_logp = F.log_softmax(s_logits, dim=-1)
    kl = (t_logp.exp() * (t_logp - s_logp)).masked_fill(~mask, 0.0).sum(-1)
    return kl * mask.any(-1).float()


def soft_target_loss(
    logits: torch.Tensor,
    soft_ids: torch.Tensor,
    soft_logprobs: torch.Tensor,
    soft_mask: torch.Tensor,
    weights: torch.Tensor,
    temperature: float,
) -> torch.Tensor:
    """Weighted mean top-k KL over the positions that carry teacher logprobs.

    Shapes: logits [B, T, V]; soft_* [B, T, K] aligned with input positions (the teacher's
    distribution for the token at position t is compared with the logits at t - 1).
    """
    logits = logits[:, :-1]
    ids, lps, mask = soft_ids[:, 1:], soft_logprobs[:, 1:], soft_mask[:, 1:]
    b, t, k = ids.shape
    kl = topk_kl(
        logits.reshape(b * t, -1),
        ids.reshape(b * t, k),
        lps.reshape(b * t, k),
        mask.reshape(b * t, k),
        temperature,
    ).view(b, t)
    position_weights = mask.any(-1).float() * weights.view(-1, 1).float()
    return (kl * position_weights).sum() / position_weights.sum().clamp_min(1e-8)


def distillation_loss(
    ce: torch.Tensor, kl: torch.Tensor, alpha: float, temperature: float
) -> torch.Tensor:
    """alpha * T^2 * KL + (1 - alpha) * CE."""
    return alpha * temperature**2 * kl + (1.0 - alpha) * ce
