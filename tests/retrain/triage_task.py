"""A rule-based support-triage teacher and a writer of datasets in curation's format.

Used by the retrain tests and by bench/distill_quality.py and bench/novel_names.py: message ->
JSON {"intent", "priority"} over 10 intents with varied phrasings, names and order numbers.
`NOVEL_ITEMS` and `NOVEL_NAMES` never occur in `make_rows` traffic: `novel_rows` names them,
as live traffic names products and customers a student never saw.
"""

from __future__ import annotations

import json
import random
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from curation.dataset import DATASET_SCHEMA, dataset_dir

SYSTEM = 'Classify the support message. Reply with JSON {"intent": ..., "priority": ...}.'

INTENTS: dict[str, list[str]] = {
    "refund": [
        "I want my money back for order {n}",
        "please refund order {n}",
        "can I get a refund on {n}",
        "refund me for the {item}",
    ],
    "shipping_delay": [
        "where is my order {n}",
        "order {n} has not arrived",
        "my {item} is late",
        "tracking for {n} is stuck",
    ],
    "cancel_order": [
        "cancel order {n}",
        "I need to cancel the {item}",
        "please stop order {n} before it ships",
        "don't send {n}, cancel it",
    ],
    "password_reset": [
        "I forgot my password",
        "can't log in, reset my password",
        "password reset link for {name}",
        "locked out of my account",
    ],
    "billing_error": [
        "I was charged twice for {n}",
        "wrong amount billed on {n}",
        "my invoice for the {item} is wrong",
        "double charge on my card",
    ],
    "product_question": [
        "does the {item} come in blue",
        "what size is the {item}",
        "is the {item} waterproof",
        "how heavy is the {item}",
    ],
    "damaged_item": [
        "the {item} arrived broken",
        "order {n} came damaged",
        "my {item} is cracked",
        "box for {n} was crushed",
    ],
    "change_address": [
        "change the address on order {n}",
        "ship {n} to my new address",
        "update delivery address for {name}",
        "wrong address on {n}",
    ],
    "account_delete": [
        "delete my account",
        "remove all my data, {name}",
        "close the account of {name}",
        "I want my account deleted",
    ],
    "complaint": [
        "your service is terrible",
        "{name} was rude to me on the phone",
        "I am unhappy with the {item}",
        "worst support ever for {n}",
    ],
}
ITEMS = ["lamp", "jacket", "kettle", "phone case", "backpack", "chair", "headset", "mug"]
NAMES = ["Ana", "Bo", "Chen", "Dara", "Eli", "Femi", "Gus", "Hana"]
NOVEL_ITEMS = ["toaster", "umbrella", "blender", "scarf", "printer", "tripod", "desk fan"]
NOVEL_NAMES = ["Ines", "Kofi", "Lars", "Mina", "Oto", "Pia", "Ravi"]
URGENT = ["urgent: ", "ASAP ", "", "", "", "", "hi, ", "hello, "]
POLITE = [" when you can", " thanks", "", "", "", " please", "!!"]


def priority(intent: str, text: str) -> str:
    """The teacher's rule: urgency words first, then the intent's default."""
    lowered = text.lower()
    if "urgent" in lowered or "asap" in lowered or "!!" in text:
        return "high"
    if "when you can" in lowered:
        return "low"
    return "high" if intent in {"billing_error", "account_delete", "damaged_item"} else "medium"


def make_pair(
    rng: random.Random, items: list[str] = ITEMS, names: list[str] = NAMES, named: bool = False
) -> tuple[str, dict[str, str]]:
    """One prompt and the teacher's answer; `named`: only templates naming an item or a name."""
    intent = rng.choice(sorted(INTENTS))
    templates = INTENTS[intent]
    if named:
        templates = [t for t in templates if "{item}" in t or "{name}" in t] or templates
    body = rng.choice(templates).format(
        n=rng.randint(1000, 99999), item=rng.choice(items), name=rng.choice(names)
    )
    text = rng.choice(URGENT) + body + rng.choice(POLITE)
    return text, {"intent": intent, "priority": priority(intent, text)}


def make_row(i: int, text: str, answer: dict[str, str], weight: float = 1.0) -> dict[str, Any]:
    content = json.dumps(answer)
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": text}]
    return {
        "request_id": f"req-{i}",
        "task": None,
        "session_hash": None,
        "teacher": "rule/triage",
        "prompt_fingerprint": "triage",
        "messages": json.dumps(messages),
        "tools": None,
        "response_format": None,
        "answer": json.dumps({"role": "assistant", "content": content}),
        "answer_text": content,
        "teacher_logprobs": None,
        "weight": weight,
        "cluster": answer["intent"],
        "group_id": f"g-{i}",
        "started_at": datetime(2026, 1, 1),
    }


def make_rows(
    n: int,
    seed: int,
    start: int = 0,
    items: list[str] = ITEMS,
    names: list[str] = NAMES,
    named: bool = False,
) -> list[dict[str, Any]]:
    """n distinct prompts (no prompt appears twice, so train and eval never share one)."""
    rng, seen, rows = random.Random(seed), set(), []
    while len(rows) < n:
        text, answer = make_pair(rng, items, names, named)
        if named and not any(w in text for w in [*items, *names]):
            continue  # an intent with no naming template: not a named request
        if text not in seen:
            seen.add(text)
            rows.append(make_row(start + len(rows), text, answer))
    return rows


def novel_rows(n: int, seed: int, start: int = 100_000) -> list[dict[str, Any]]:
    """n prompts that each name an item or a person `make_rows` never names."""
    return make_rows(n, seed, start, NOVEL_ITEMS, NOVEL_NAMES, named=True)


def write_dataset(
    data_dir: Path,
    route: str,
    version: int,
    train: list[dict[str, Any]],
    evals: list[dict[str, Any]],
) -> Path:
    """A dataset version exactly as curation writes one."""
    out = dataset_dir(data_dir, route, version)
    out.mkdir(parents=True, exist_ok=True)
    for name, rows in (("train", train), ("eval", evals)):
        pq.write_table(pa.Table.from_pylist(rows, schema=DATASET_SCHEMA), out / f"{name}.parquet")
    manifest = {
        "version": version,
        "route": route,
        "train_rows": len(train),
        "eval_rows": len(evals),
    }
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out


def split_rows(
    n_train: int, n_eval: int, seed: int = 0
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    rows = make_rows(n_train + n_eval, seed)
    return rows[:n_train], rows[n_train:]
