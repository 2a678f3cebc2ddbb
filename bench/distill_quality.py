"""Distillation quality against data size: how many teacher pairs does a tiny student need?

A rule-based support-triage teacher (10 intents, JSON answers) labels 2,000 training prompts and
200 held-out ones. For 10/25/50/100% of the training pairs, the full retrain job runs on a fresh
data_dir (tiny base pretrained on that share's text, then LoRA or full fine-tuning) and the
student is scored on the same held-out prompts. Prints a table and writes a plot.

    .venv/bin/python bench/distill_quality.py [--methods lora,full] [--fractions 0.1,1]

Target (one CPU thread): >= 97% exact match at 100% in under 5 minutes of training.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the task generator lives with the retrain tests

import torch  # noqa: E402

from retrain.job import run_retrain  # noqa: E402
from retrain.settings import RetrainSettings  # noqa: E402
from retrain.students import base_dir  # noqa: E402
from tests.retrain.triage_task import split_rows, write_dataset  # noqa: E402

ROUTE = "triage"


def run_one(method: str, fraction: float, train: list[Any], evals: list[Any]) -> dict[str, Any]:
    rows = train[: max(1, int(len(train) * fraction))]
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        write_dataset(data_dir, ROUTE, 1, rows, evals)
        # Gate off: the benchmark reports quality, it does not decide anything.
        settings = RetrainSettings(method=method, gate={"exact_match": 0.0}, latency_samples=50)
        started = time.perf_counter()
        result = run_retrain(data_dir, ROUTE, settings, progress=False)
        wall = time.perf_counter() - started
        base_info = json.loads((base_dir(data_dir, ROUTE) / "apprentice_base.json").read_text())
    m = result.metrics
    return {
        "method": method,
        "fraction": fraction,
        "pairs": len(rows),
        "exact_match": m["exact_match"],
        "base_exact_match": result.base_metrics["exact_match"],
        "token_f1": m["token_f1"],
        "pretrain_s": base_info["pretrain_seconds"],
        "train_s": result.train_seconds,
        "wall_s": wall,
        "p50_ms": m["latency_p50_ms"],
        "p95_ms": m["latency_p95_ms"],
    }


def table(results: list[dict[str, Any]]) -> str:
    head = (
        "| method | pairs | exact match | base EM | token F1 | pretrain s | train s "
        "| p50 ms | p95 ms |"
    )
    lines = [head, "|" + "---|" * 9]
    for r in results:
        lines.append(
            f"| {r['method']} | {r['pairs']} | {r['exact_match']:.3f} | "
            f"{r['base_exact_match']:.3f} | {r['token_f1']:.3f} | {r['pretrain_s']:.1f} | "
            f"{r['train_s']:.1f} | {r['p50_ms']:.1f} | {r['p95_ms']:.1f} |"
        )
    return "\n".join(lines)


def plot(results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for method in sorted({r["method"] for r in results}):
        rs = [r for r in results if r["method"] == method]
        ax.plot([r["pairs"] for r in rs], [r["exact_match"] for r in rs], "o-", label=method)
    ax.axhline(0.97, color="grey", linestyle="--", linewidth=1, label="target 0.97")
    ax.set_xscale("log")
    ax.set_xlabel("training pairs")
    ax.set_ylabel("held-out exact match")
    ax.set_ylim(0, 1.02)
    ax.set_title("Tiny student vs teacher, support triage")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default="lora", help="comma-separated: lora,full")
    parser.add_argument("--fractions", default="0.1,0.25,0.5,1.0")
    parser.add_argument("--pairs", type=int, default=2000)
    parser.add_argument("--plot", type=Path, default=ROOT / "bench" / "distill_quality.png")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    train, evals = split_rows(args.pairs, 200, seed=0)
    results = []
    for method in args.methods.split(","):
        for fraction in (float(f) for f in args.fractions.split(",")):
            results.append(run_one(method, fraction, train, evals))
            print(table(results[-1:]).splitlines()[-1], flush=True)
    print(table(results))
    plot(results, args.plot)
    print(f"plot: {args.plot}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
