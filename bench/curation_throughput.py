"""Throughput of the whole curation job on synthetic logged traffic.

    .venv/bin/python bench/curation_throughput.py [--rows 100000] [--dup-share 0.3]

Writes `rows` logged requests as sealed segments (10,000 rows each): a system prompt, a 60-word
user prompt drawn from a few request types, a teacher answer; `dup-share` of them are near
duplicates of an earlier prompt (one word changed, shingle Jaccard ~0.9), and a few percent
carry PII, errors or refusals. It then runs `run_curation` in a child process, so that the peak
RSS reported is the job's alone (the child's VmHWM), and prints rows/s, seconds and peak RSS.
Target: under 60 s.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from curation.settings import CurationSettings
from logbook.schema import ROW_SCHEMA_VERSION, arrow_schema
from logbook.sealing import segment_path

SEGMENT_ROWS = 10_000
T0 = datetime(2026, 1, 1)
TEMPLATES = [
    "Classify this support ticket into billing, shipping or account:",
    "Summarise the following customer email in one sentence:",
    "Translate into French:",
    "Extract the order number and the product from:",
    "Write a polite reply to:",
]


def synthetic_rows(n: int, dup_share: float, seed: int = 0) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    vocab = [f"w{i}" for i in range(20_000)]
    prompts: list[str] = []
    rows = []
    for i in range(n):
        if prompts and rng.random() < dup_share:
            words = rng.choice(prompts).split()
            words[rng.randrange(len(words))] = rng.choice(vocab)  # a near duplicate
            prompt = " ".join(words)
        else:
            template = TEMPLATES[0] if rng.random() < 0.6 else rng.choice(TEMPLATES[1:])
            prompt = template + " " + " ".join(rng.choices(vocab, k=60))
            prompts.append(prompt)
        rows.append(_row(i, prompt, rng))
    return rows


def _row(i: int, prompt: str, rng: random.Random) -> dict[str, Any]:
    roll = rng.random()
    if roll < 0.02:
        prompt += f" contact me at user{i}@example.com or +1 415 555 {i % 10_000:04d}"
    answer = "I'm sorry, but I can't help with that." if roll > 0.98 else f"Answer {i}: billing"
    request = {
        "model": "bench",
        "messages": [
            {"role": "system", "content": "You are a support assistant."},
            {"role": "user", "content": prompt},
        ],
    }
    response = {
        "object": "chat.completion",
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "message": {"role": "assistant", "content": answer},
            }
        ],
    }
    failed = 0.95 < roll < 0.96
    row: dict[str, Any] = {name: None for name in arrow_schema("requests").names}
    row.update(
        request_id=f"req-{i:07d}",
        schema_version=ROW_SCHEMA_VERSION,
        started_at=T0 + timedelta(seconds=i),
        ended_at=T0 + timedelta(seconds=i + 1),
        route="bench",
        served_by="teacher",
        teacher="openai/gpt-4o-mini",
        prompt_fingerprint="fp",
        session_hash=f"s{i // 7}",
        request=json.dumps(request),
        response=None if failed else json.dumps(response),
        status=502 if failed else 200,
        outcome="upstream_error" if failed else "ok",
        finish_reason="stop",
        truncated=False,
        usage_estimated=True,
        stream=False,
    )
    return row


def write_segments(data_dir: Path, rows: list[dict[str, Any]]) -> None:
    schema = pa.schema([pa.field("seq", pa.int64()), *arrow_schema("requests")])
    for start in range(0, len(rows), SEGMENT_ROWS):
        chunk = [
            {"seq": start + j + 1, **r} for j, r in enumerate(rows[start : start + SEGMENT_ROWS])
        ]
        path = segment_path(
            data_dir, "requests", "bench", T0.date(), start + 1, start + len(chunk), "0" * 32
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(chunk, schema=schema), path, compression="zstd")


def curate(data_dir: Path) -> None:
    """Child process: run the job and print its result as JSON."""
    from curation.job import run_curation

    started = time.perf_counter()
    result = run_curation(data_dir, "bench", CurationSettings())
    seconds = time.perf_counter() - started
    stages = {s.name: s.to_json() for s in result.stages}
    print(
        json.dumps(
            {"seconds": seconds, "counts": result.counts, "stages": stages, "peak_mb": _peak_mb()}
        )
    )


def _peak_mb() -> float:
    """This process's peak RSS (VmHWM). Not getrusage: Linux carries ru_maxrss across exec,
    so a child would report its parent's size at fork."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--dup-share", type=float, default=0.3)
    parser.add_argument("--curate", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.curate:
        curate(args.curate)
        return
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        write_segments(data_dir, synthetic_rows(args.rows, args.dup_share))
        child = subprocess.run(
            [sys.executable, __file__, "--curate", str(data_dir)],
            check=True,
            capture_output=True,
            text=True,
        )
    report = json.loads(child.stdout.strip().splitlines()[-1])
    _print(args.rows, report, report["peak_mb"])


def _print(rows: int, report: dict[str, Any], peak_mb: float) -> None:
    table = Table(title=f"curation job: {rows:,} logged rows")
    for column in ("rows/s", "seconds", "peak RSS (MB)", "train", "eval"):
        table.add_column(column, justify="right")
    table.add_row(
        f"{rows / report['seconds']:,.0f}",
        f"{report['seconds']:.1f}",
        f"{peak_mb:,.0f}",
        str(report["counts"]["train"]),
        str(report["counts"]["eval"]),
    )
    stages = Table(title="rows removed per stage")
    for column in ("stage", "in", "out", "why"):
        stages.add_column(column)
    for name, stage in report["stages"].items():
        why = ", ".join(f"{k}: {v}" for k, v in {**stage["dropped"], **stage["changed"]}.items())
        stages.add_row(name, str(stage["rows_in"]), str(stage["rows_out"]), why)
    console = Console()
    console.print(table)
    console.print(stages)


if __name__ == "__main__":
    main()
