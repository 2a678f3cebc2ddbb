"""Throughput and memory of the whole curation job on synthetic logged traffic, by log size.

    .venv/bin/python bench/curation_throughput.py [--rows 10000000] [--dup-share 0.3] \
        [--workers 2] [--keep-data DIR]

For each size from 100,000 rows up to `--rows` (100k, 1M, 10M, ...), writes that many logged
requests as sealed segments (10,000 rows each): a system prompt, a 60-word user prompt drawn
from a few request types, a teacher answer; `dup-share` of them are near duplicates of a recent
prompt (one word changed, shingle Jaccard ~0.9), and a few percent carry PII, errors or
refusals. Rows are generated a segment at a time, so the generator's memory stays flat. It then
runs `run_curation` in a child process, so that the peak RSS reported is the job's alone (the
child's VmHWM), and prints rows/s, seconds and peak RSS per size. Target: 10M rows in under 10
minutes with peak RSS under 2 GB, cost linear in rows.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import deque
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
RECENT_PROMPTS = 50_000  # near duplicates copy one of these: copies come close in time
T0 = datetime(2026, 1, 1)
TEMPLATES = [
    "Classify this support ticket into billing, shipping or account:",
    "Summarise the following customer email in one sentence:",
    "Translate into French:",
    "Extract the order number and the product from:",
    "Write a polite reply to:",
]
SYSTEM = '{"role": "system", "content": "You are a support assistant."}'
REFUSAL = "I'm sorry, but I can't help with that."


def _word(i: int) -> str:
    """A lowercase letter word per index: ids made of digits would all read as rare spans."""
    letters = ""
    while True:
        letters += chr(97 + i % 26)
        i //= 26
        if not i:
            return "w" + letters


# Prompts are common words (each in ~15% of prompts) and one item name of many: word soup
# drawn from a large vocabulary would make every word a rare span for the novel stage.
VOCAB = [_word(i) for i in range(400)]
ITEMS = [_word(i) + "x" for i in range(5_000)]


def synthetic_segments(n: int, dup_share: float, seed: int = 0) -> Any:
    """Columns of `n` logged rows, one segment (`SEGMENT_ROWS` rows) at a time."""
    rng = random.Random(seed)
    recent: deque[str] = deque(maxlen=RECENT_PROMPTS)
    for start in range(0, n, SEGMENT_ROWS):
        rows = [
            _row(i, _prompt(rng, recent, dup_share), rng)
            for i in range(start, min(n, start + SEGMENT_ROWS))
        ]
        yield start, {k: [r[k] for r in rows] for k in rows[0]}


def _prompt(rng: random.Random, recent: deque[str], dup_share: float) -> str:
    if recent and rng.random() < dup_share:
        words = recent[rng.randrange(len(recent))].split()
        words[rng.randrange(len(words))] = rng.choice(VOCAB)  # a near duplicate
        return " ".join(words)
    template = TEMPLATES[0] if rng.random() < 0.6 else rng.choice(TEMPLATES[1:])
    words = rng.choices(VOCAB, k=60)
    words[rng.randrange(60)] = rng.choice(ITEMS)
    prompt = template + " " + " ".join(words)
    recent.append(prompt)
    return prompt


def _row(i: int, prompt: str, rng: random.Random) -> dict[str, Any]:
    roll = rng.random()
    if roll < 0.02:
        prompt += f" contact me at user{i}@example.com or +1 415 555 {i % 10_000:04d}"
    answer = REFUSAL if roll > 0.98 else f"Answer {i}: billing"
    failed = 0.95 < roll < 0.96
    # json.dumps per row costs more than the job's own parse; these texts need no escaping
    # but the quote in the refusal.
    request = (
        f'{{"model": "bench", "messages": [{SYSTEM}, {{"role": "user", "content": "{prompt}"}}]}}'
    )
    response = json.dumps(
        {"object": "chat.completion", "choices": [{"index": 0, "finish_reason": "stop",
         "message": {"role": "assistant", "content": answer}}]}
    )  # fmt: skip
    return {
        "request_id": f"req-{i:08d}",
        "started_at": T0 + timedelta(seconds=i),
        "session_hash": f"s{i // 7}",
        "request": request,
        "response": None if failed else response,
        "status": 502 if failed else 200,
        "outcome": "upstream_error" if failed else "ok",
    }


def write_segments(data_dir: Path, n: int, dup_share: float) -> None:
    schema = pa.schema([pa.field("seq", pa.int64()), *arrow_schema("requests")])
    fixed = {
        "schema_version": ROW_SCHEMA_VERSION, "route": "bench", "served_by": "teacher",
        "teacher": "openai/gpt-4o-mini", "prompt_fingerprint": "fp", "finish_reason": "stop",
        "truncated": False, "usage_estimated": True, "stream": False,
    }  # fmt: skip
    for start, columns in synthetic_segments(n, dup_share):
        size = len(columns["request_id"])
        columns["seq"] = list(range(start + 1, start + size + 1))
        columns["ended_at"] = [t + timedelta(seconds=1) for t in columns["started_at"]]
        arrays = []
        for field in schema:
            if field.name in columns:
                arrays.append(pa.array(columns[field.name], field.type))
            elif field.name in fixed:
                arrays.append(pa.array([fixed[field.name]] * size, field.type))
            else:
                arrays.append(pa.nulls(size, field.type))
        path = segment_path(
            data_dir, "requests", "bench", T0.date(), start + 1, start + size, "0" * 32
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_arrays(arrays, schema=schema), path, compression="zstd")


def curate(data_dir: Path, workers: int) -> None:
    """Child process: run the job and print its result as JSON."""
    from curation.job import run_curation
    from curation.scan import Resources

    started = time.perf_counter()
    result = run_curation(
        data_dir, "bench", CurationSettings(), resources=Resources(workers=workers)
    )
    seconds = time.perf_counter() - started
    stages = {s.name: s.to_json() for s in result.stages}
    # The largest worker process's peak (an upper bound: Linux may carry over the size the
    # worker was forked at); each holds one batch at a time.
    worker_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "seconds": seconds,
                "counts": result.counts,
                "stages": stages,
                "peak_mb": _peak_mb(),
                "worker_peak_mb": worker_mb,
            }
        )
    )


def _peak_mb() -> float:
    """This process's peak RSS (VmHWM). Not getrusage: Linux carries ru_maxrss across exec,
    so a child would report its parent's size at fork."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def sizes(rows: int) -> list[int]:
    """100k, 1M, 10M, ... up to `rows`, and `rows` itself."""
    out, size = [], 100_000
    while size < rows:
        out.append(size)
        size *= 10
    return [*out, rows]


def measure(rows: int, dup_share: float, workers: int, keep: Path | None) -> dict[str, Any]:
    """One size: generate (or reuse, under `keep`) the log, curate it in a child process."""
    data_dir = Path(tempfile.mkdtemp(prefix="curation-bench-"))
    try:
        started = time.perf_counter()
        _segments(data_dir, rows, dup_share, keep)
        generated = time.perf_counter() - started
        child = subprocess.run(
            [sys.executable, __file__, "--curate", str(data_dir), "--workers", str(workers)],
            check=True,
            capture_output=True,
            text=True,
        )
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    report: dict[str, Any] = json.loads(child.stdout.strip().splitlines()[-1])
    report["rows"], report["generate_s"] = rows, generated
    return report


def _segments(data_dir: Path, rows: int, dup_share: float, keep: Path | None) -> None:
    """The log of `rows` rows under `data_dir`: generated, or linked from `keep` where an
    earlier run left it (generating 10M rows takes ~5 minutes)."""
    if keep is None:
        write_segments(data_dir, rows, dup_share)
        return
    kept = keep / f"rows-{rows}-dup-{dup_share}"
    if not (kept / "segments").is_dir():
        tmp = kept.with_name(kept.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        write_segments(tmp, rows, dup_share)
        tmp.rename(kept)
    shutil.copytree(kept / "segments", data_dir / "segments", copy_function=os.link)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dup-share", type=float, default=0.3)
    parser.add_argument(
        "--workers", type=int, default=2, help="processes for the row-local stages (cores)"
    )
    parser.add_argument(
        "--keep-data", type=Path, help="keep generated logs in this folder and reuse them"
    )
    parser.add_argument("--curate", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.curate:
        curate(args.curate, args.workers)
        return
    reports = []
    for size in sizes(args.rows):
        reports.append(measure(size, args.dup_share, args.workers, args.keep_data))
        print(json.dumps({k: v for k, v in reports[-1].items() if k != "stages"}), flush=True)
    _print(reports)


def _print(reports: list[dict[str, Any]]) -> None:
    table = Table(title="curation job by log size")
    columns = ("rows", "rows/s", "seconds", "peak RSS (MB)", "worker peak (MB)", "train", "eval",
               "s per 1M")  # fmt: skip
    for column in columns:
        table.add_column(column, justify="right")
    for report in reports:
        table.add_row(
            f"{report['rows']:,}",
            f"{report['rows'] / report['seconds']:,.0f}",
            f"{report['seconds']:.1f}",
            f"{report['peak_mb']:,.0f}",
            f"{report.get('worker_peak_mb', 0):,.0f}",
            str(report["counts"]["train"]),
            str(report["counts"]["eval"]),
            f"{report['seconds'] * 1e6 / report['rows']:.1f}",
        )
    stages = Table(title=f"rows removed per stage ({reports[-1]['rows']:,} rows)")
    for column in ("stage", "in", "out", "why"):
        stages.add_column(column)
    for name, stage in reports[-1]["stages"].items():
        why = ", ".join(f"{k}: {v}" for k, v in {**stage["dropped"], **stage["changed"]}.items())
        stages.add_row(name, str(stage["rows_in"]), str(stage["rows_out"]), why)
    console = Console()
    console.print(table)
    console.print(stages)


if __name__ == "__main__":
    main()
