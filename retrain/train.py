"""The training loop, top to bottom: examples in, a trained model (adapter or full) out.

Runs under `accelerate`, so `accelerate launch -m ...` spreads it over several GPUs unchanged;
on a CPU it is a plain loop. bf16 autocast on CUDA, fp32 on CPU (bf16 matmuls on CPU are slower
than fp32 here). Thread count is set deliberately: on 2 busy cores, 2 threads were 2.7-7x slower
than 1 (FINDINGS).
"""

from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from torch.utils.data import DataLoader

from retrain.evaluation import exact_match, generate
from retrain.examples import IGNORE, Example, collate, row_prompt
from retrain.losses import distillation_loss, soft_target_loss, weighted_cross_entropy
from retrain.settings import RetrainSettings
from retrain.students import prompt_ids

log = logging.getLogger("retrain")


@dataclass
class TrainResult:
    steps: int
    seconds: float
    tokens: int
    final_loss: float
    history: list[dict[str, float]] = field(default_factory=list)


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def lr_at(step: int, settings: RetrainSettings) -> float:
    """Fraction of the peak learning rate: linear warm-up, then cosine down to 10%."""
    if step < settings.warmup_steps:
        return (step + 1) / settings.warmup_steps
    span = max(1, settings.max_steps - settings.warmup_steps)
    progress = min(1.0, (step - settings.warmup_steps) / span)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))


def batch_loss(model: Any, batch: dict[str, torch.Tensor], settings: RetrainSettings) -> Any:
    """CE on the answer tokens, plus the soft-target term when the batch carries logprobs."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    ce = weighted_cross_entropy(logits, batch["labels"], batch["weights"])
    if "soft_ids" not in batch or settings.distill_alpha == 0:
        return ce
    kl = soft_target_loss(
        logits,
        batch["soft_ids"],
        batch["soft_logprobs"],
        batch["soft_mask"],
        batch["weights"],
        settings.distill_temperature,
    )
    return distillation_loss(ce, kl, settings.distill_alpha, settings.distill_temperature)


def train(
    model: Any,
    tokenizer: Any,
    train_examples: list[Example],
    eval_examples: list[Example],
    eval_rows: list[dict[str, Any]],
    settings: RetrainSettings,
    progress: bool = True,
) -> TrainResult:
    """Train `model` in place for settings.max_steps (or max_seconds) and return its history."""
    if not train_examples:
        raise ValueError("The dataset has no usable training rows (all empty or zero weight).")
    torch.set_num_threads(settings.num_threads)
    set_seed(settings.seed)
    accelerator = Accelerator(mixed_precision="bf16" if torch.cuda.is_available() else "no")
    pad_id = tokenizer.pad_token_id

    # Data: reshuffled every epoch from a seeded generator, so a run is reproducible.
    loader = DataLoader(
        train_examples,  # type: ignore[arg-type]
        batch_size=min(settings.batch_size, len(train_examples)),
        shuffle=True,
        drop_last=len(train_examples) > settings.batch_size,
        collate_fn=partial(collate, pad_id=pad_id),
        generator=torch.Generator().manual_seed(settings.seed),
    )
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        trainable, lr=settings.peak_lr(), weight_decay=settings.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_at(s, settings))
    model, optimizer, loader, scheduler = accelerator.prepare(model, optimizer, loader, scheduler)

    # Eval prompts for the plot's exact-match curve: a fixed sample, tokenised once.
    sample = eval_rows[: settings.eval_sample]
    sample_prompts = [prompt_ids(tokenizer, row_prompt(r)) for r in sample]
    answer_budget = max((sum(t != IGNORE for t in e.labels) for e in eval_examples), default=64)

    def evaluate_point(step: int) -> dict[str, float]:
        unwrapped = accelerator.unwrap_model(model)
        point: dict[str, float] = {"step": float(step)}
        if eval_examples:
            with torch.no_grad():
                losses = []
                for i in range(0, len(eval_examples), 64):
                    batch = collate(eval_examples[i : i + 64], pad_id)
                    batch = {k: v.to(accelerator.device) for k, v in batch.items()}
                    losses.append(float(batch_loss(unwrapped, batch, settings)))
                point["eval_loss"] = sum(losses) / len(losses)
        if sample:
            answers = generate(unwrapped, tokenizer, sample_prompts, min(answer_budget, 256))
            hits = [
                exact_match(a, r["answer_text"] or "") for a, r in zip(answers, sample, strict=True)
            ]
            point["eval_exact_match"] = sum(hits) / len(hits)
        model.train()
        return point

    # Step 0 shows where training starts from (a pretrained base already knows some answers).
    history: list[dict[str, float]] = [evaluate_point(0)] if accelerator.is_main_process else []
    bar = None
    if progress and accelerator.is_main_process:
        from tqdm.auto import tqdm

        bar = tqdm(total=settings.max_steps, desc="retrain", leave=False)
    model.train()
    step, tokens, loss_ema = 0, 0, float("nan")
    started = time.perf_counter()
    while step < settings.max_steps:
        for batch in loader:
            loss = batch_loss(model, batch, settings)
            accelerator.backward(loss)
            accelerator.clip_grad_norm_(trainable, 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)

            step += 1
            tokens += int(batch["attention_mask"].sum())
            value = float(loss.detach())
            loss_ema = value if math.isnan(loss_ema) else 0.9 * loss_ema + 0.1 * value
            elapsed = time.perf_counter() - started
            if step % 10 == 0 or step == 1:
                history.append({"step": float(step), "train_loss": value})
            if bar is not None:
                bar.set_postfix(loss=f"{loss_ema:.3f}", tok_s=f"{tokens / elapsed:.0f}")
                bar.update(1)
            out_of_time = settings.max_seconds is not None and elapsed > settings.max_seconds
            if accelerator.is_main_process and (
                step % settings.eval_every == 0 or step == settings.max_steps or out_of_time
            ):
                point = evaluate_point(step)
                history.append(point)
                log.info(
                    "step %d loss %.4f eval %s (%.0f tok/s)",
                    step,
                    loss_ema,
                    point,
                    tokens / elapsed,
                )
            if step >= settings.max_steps or out_of_time:
                break
        if (
            settings.max_seconds is not None
            and time.perf_counter() - started > settings.max_seconds
        ):
            break
    seconds = time.perf_counter() - started
    if bar is not None:
        bar.close()
    accelerator.wait_for_everyone()
    model = accelerator.unwrap_model(model)
    model.eval()
    log.info("trained %d steps in %.1fs (%d tokens)", step, seconds, tokens)
    return TrainResult(step, seconds, tokens, loss_ema, history)
