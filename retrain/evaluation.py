"""Evaluation against the teacher: greedy generation on the eval split, then task metrics.

Metrics are pure functions of strings so tests can pin them down; `evaluate` runs a model.
Exact match and token F1 are the student contract's (`retrain.students`), the very measures
shadow comparisons use in traffic: whitespace normalised and, when both answers parse as JSON,
keys sorted, because key order and spacing are not part of what the teacher meant.

Every answer also carries its confidence signals, computed from the logprobs of its tokens
exactly as the proxy computes them when serving (`retrain.students.confidence_signals`), and
its eval slice (`in_distribution`, or `novel`: rows naming spans train never had), so that
each slice is scored on its own and the cascade is calibrated on both.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from retrain.examples import row_prompt
from retrain.slots import Slots, delexicalize_messages, relexicalize
from retrain.students import (
    Prompt,
    confidence_signals,
    exact_match,
    parse_json,
    prompt_ids,
    token_f1,
)

IN_DISTRIBUTION, NOVEL = "in_distribution", "novel"
SLICES = (IN_DISTRIBUTION, NOVEL)


def canonical_tool_calls(calls: Any) -> list[tuple[str, str]] | None:
    """[(name, normalised arguments)] from OpenAI tool_calls or a bare list of {name, arguments}."""
    if isinstance(calls, dict):
        calls = calls.get("tool_calls", [calls])
    if not isinstance(calls, list) or not calls:
        return None
    out = []
    for call in calls:
        if not isinstance(call, dict):
            return None
        fn = call.get("function", call)
        args = fn.get("arguments", {})
        if isinstance(args, str):
            parsed = parse_json(args)
            args = parsed if parsed is not None else args
        out.append((str(fn.get("name")), json.dumps(args, sort_keys=True)))
    return sorted(out)


def teacher_tool_calls(answer_json: str | None) -> list[tuple[str, str]] | None:
    if not answer_json:
        return None
    answer = json.loads(answer_json)
    return canonical_tool_calls(answer.get("tool_calls")) if isinstance(answer, dict) else None


@dataclass
class Scored:
    prompt: str
    teacher: str
    student: str
    exact: bool
    f1: float
    slice: str = IN_DISTRIBUTION
    signals: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        signals = {k: (None if math.isinf(v) else round(v, 5)) for k, v in self.signals.items()}
        return {"prompt": self.prompt, "teacher": self.teacher, "student": self.student,
                "exact_match": self.exact, "token_f1": self.f1, "slice": self.slice,
                "signals": signals}  # fmt: skip


@dataclass
class EvalReport:
    metrics: dict[str, float | None]
    items: list[Scored] = field(default_factory=list)
    slices: dict[str, EvalReport] = field(default_factory=dict)

    def worst(self, n: int = 20) -> list[dict[str, Any]]:
        """The n worst disagreements (lowest token F1 among non-exact answers)."""
        wrong = sorted((s for s in self.items if not s.exact), key=lambda s: s.f1)[:n]
        return [
            {
                "prompt": s.prompt,
                "teacher": s.teacher,
                "student": s.student,
                "token_f1": s.f1,
                "slice": s.slice,
                "signals": s.to_json()["signals"],
            }
            for s in wrong
        ]


def row_slice(row: dict[str, Any]) -> str:
    """The eval slice of a dataset row (datasets from before slices: in_distribution)."""
    return NOVEL if row.get("slice") == NOVEL else IN_DISTRIBUTION


def score(
    rows: list[dict[str, Any]],
    predictions: list[str],
    latencies_ms: list[float],
    signals: list[dict[str, float]] | None = None,
) -> EvalReport:
    """Metrics of predictions against the rows' teacher answers, overall and per slice."""
    report = _score(rows, predictions, latencies_ms, signals or [{} for _ in rows])
    for name in SLICES:
        picked = [i for i, row in enumerate(rows) if row_slice(row) == name]
        if picked:
            sub = _score([rows[i] for i in picked], [predictions[i] for i in picked],
                         latencies_ms, [report.items[i].signals for i in picked])  # fmt: skip
            report.slices[name] = sub
    return report


def _score(
    rows: list[dict[str, Any]],
    predictions: list[str],
    latencies_ms: list[float],
    signals: list[dict[str, float]],
) -> EvalReport:
    items, json_ok, tool_ok, ratios = [], [], [], []
    for row, pred, sig in zip(rows, predictions, signals, strict=True):
        ref = row["answer_text"] or ""
        items.append(
            Scored(
                _last_user(row),
                ref,
                pred,
                exact_match(pred, ref),
                token_f1(pred, ref),
                row_slice(row),
                sig,
            )
        )
        if parse_json(ref) is not None:
            json_ok.append(parse_json(pred) is not None)
        calls = teacher_tool_calls(row.get("answer"))
        if calls is not None:
            tool_ok.append(canonical_tool_calls(parse_json(pred)) == calls)
        ratios.append(len(pred) / max(1, len(ref)))
    metrics: dict[str, float | None] = {
        "n": float(len(rows)),
        "exact_match": _mean([s.exact for s in items]),
        "token_f1": _mean([s.f1 for s in items]),
        "json_valid": _mean(json_ok),
        "tool_call_match": _mean(tool_ok),
        "length_ratio": _mean(ratios),
        "latency_p50_ms": _percentile(latencies_ms, 50),
        "latency_p95_ms": _percentile(latencies_ms, 95),
    }
    return EvalReport(metrics, items)


def _last_user(row: dict[str, Any]) -> str:
    messages = row_prompt(row).messages
    users = [m for m in messages if m.get("role") == "user"]
    content = (users or messages or [{"content": ""}])[-1].get("content")
    return content if isinstance(content, str) else json.dumps(content)


def _mean(values: list[Any]) -> float | None:
    return float(sum(values)) / len(values) if values else None


def _percentile(values: list[float], q: int) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


@torch.no_grad()
def generate(
    model: Any,
    tokenizer: Any,
    prompts: list[list[int]],
    max_new_tokens: int,
    batch_size: int = 32,
) -> list[str]:
    """Greedy answers for prompt token ids, batched with left padding."""
    model.eval()
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    answers: list[str] = []
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start : start + batch_size]
        width = max(len(p) for p in chunk)
        ids = torch.tensor([[pad] * (width - len(p)) + p for p in chunk], device=device)
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in chunk], device=device)
        out = model.generate(
            input_ids=ids,
            attention_mask=mask,
            do_sample=False,
            max_new_tokens=max_new_tokens,
            pad_token_id=pad,
            eos_token_id=tokenizer.eos_token_id,
        )
        for row in out[:, width:]:
            answers.append(tokenizer.decode(row, skip_special_tokens=True).strip())
    return answers


@dataclass(frozen=True)
class Generated:
    """A greedy answer, its tokens' text (EOS left out, as serving reports them) and logprobs."""

    text: str
    tokens: list[str]
    logprobs: list[float]


@torch.no_grad()
def generate_scored(
    model: Any,
    tokenizer: Any,
    prompts: list[list[int]],
    max_new_tokens: int,
    batch_size: int = 32,
) -> list[Generated]:
    """Greedy answers with each token's logprob under the model (log-softmax of the raw
    logits, as the proxy's decoder computes it)."""
    model.eval()
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    eos = tokenizer.eos_token_id
    # Every id that ends an answer, as the proxy's decoder stops on them (a real base's
    # generation config may name more than the tokenizer's EOS).
    configured = getattr(model.generation_config, "eos_token_id", None)
    stops = {eos, *(configured if isinstance(configured, list) else [configured])} - {None}
    out: list[Generated] = []
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start : start + batch_size]
        width = max(len(p) for p in chunk)
        ids = torch.tensor([[pad] * (width - len(p)) + p for p in chunk], device=device)
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in chunk], device=device)
        result = model.generate(
            input_ids=ids, attention_mask=mask, do_sample=False, max_new_tokens=max_new_tokens,
            pad_token_id=pad, eos_token_id=sorted(stops), repetition_penalty=1.0,
            output_logits=True, return_dict_in_generate=True,
        )  # fmt: skip
        steps = torch.stack(result.logits, dim=1).float().log_softmax(-1)  # [batch, steps, vocab]
        for b, row in enumerate(result.sequences[:, width:].tolist()):
            tokens, logprobs, kept = [], [], []
            for t, token_id in enumerate(row):
                if token_id in stops or t >= steps.shape[1]:
                    break
                kept.append(token_id)
                tokens.append(tokenizer.decode([token_id]))
                logprobs.append(float(steps[b, t, token_id]))
            text = tokenizer.decode(kept, skip_special_tokens=True).strip()
            out.append(Generated(text, tokens, logprobs))
    return out


def evaluate(
    model: Any,
    tokenizer: Any,
    rows: list[dict[str, Any]],
    max_new_tokens: int,
    latency_samples: int,
    slots: Slots | None = None,
) -> EvalReport:
    """Generate for every eval row, score it, and time `latency_samples` requests one by one.

    With `slots`, the student is asked as the proxy asks it (slots in the prompt) and its
    answer is filled in before it is scored against the teacher's."""
    conversations, values = [], []
    for row in rows:
        prompt = row_prompt(row)
        filled: list[str] = []
        if slots is not None:
            messages, filled = delexicalize_messages(prompt.messages, slots)
            prompt = Prompt(messages, prompt.tools)
        conversations.append(prompt)
        values.append(filled)
    prompts = [prompt_ids(tokenizer, p) for p in conversations]
    longest = max((len(tokenizer(r["answer_text"] or "")["input_ids"]) for r in rows), default=8)
    # Room for a somewhat longer answer than the teacher's, without letting a babbling
    # untrained base run to the global limit on every row.
    budget = min(max_new_tokens, int(longest * 1.5) + 8)
    generated = generate_scored(model, tokenizer, prompts, budget)
    predictions = [
        g.text if slots is None else (relexicalize(g.text, v) or g.text)
        for g, v in zip(generated, values, strict=True)
    ]
    signals = [confidence_signals(g.tokens, g.logprobs) for g in generated]
    latencies = []
    for prompt in prompts[:latency_samples]:
        started = time.perf_counter()
        generate(model, tokenizer, [prompt], budget, batch_size=1)
        latencies.append((time.perf_counter() - started) * 1000)
    return score(rows, predictions, latencies, signals)
