"""Student serving latency: p50/p95 and tokens/s at 1, 8 and 32 concurrent clients.

The in-process backend runs with dynamic batching (default window and batch size) and without
(window 0, max batch 1), on a tiny triage student trained here (or an existing one with
--data-dir/--version). Each client sends its requests one after another. The teacher row is
SIMULATED: an asyncio sleep of --teacher-ms per request (no model, no network), to show the
gap a student closes; set it to your real teacher's p50.

    .venv/bin/python bench/student_latency.py [--teacher-ms 300] [--requests-per-client 4]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the task generator lives with the retrain tests

import torch  # noqa: E402

from proxy.settings import StudentSettings  # noqa: E402
from proxy.student_backend import InProcessStudent  # noqa: E402
from retrain.job import run_retrain  # noqa: E402
from retrain.settings import RetrainSettings  # noqa: E402
from retrain.students import load_student, student_dir  # noqa: E402
from tests.retrain.triage_task import make_rows, write_dataset  # noqa: E402

ROUTE = "triage"
CLIENTS = (1, 8, 32)


def train_student(data_dir: Path) -> int:
    """A default-sized tiny student, trained briefly: latency does not depend on accuracy."""
    rows = make_rows(1100, seed=3)
    write_dataset(data_dir, ROUTE, 1, rows[:1000], rows[1000:])
    settings = RetrainSettings(max_steps=300, pretrain_steps=100, gate={"exact_match": 0.0})
    result = run_retrain(data_dir, ROUTE, settings)
    return result.version


def payloads(n: int) -> list[dict[str, Any]]:
    return [
        {"model": ROUTE, "messages": json.loads(r["messages"]), "max_tokens": 32}
        for r in make_rows(n, seed=77)
    ]


async def measure(call: Any, clients: int, per_client: int) -> dict[str, float]:
    """Latencies and generated tokens of `clients` concurrent clients."""
    prompts = payloads(clients * per_client)
    latencies: list[float] = []
    tokens = 0

    async def client(mine: list[dict[str, Any]]) -> None:
        nonlocal tokens
        for payload in mine:
            started = time.perf_counter()
            produced = await call(payload)  # awaited first: `tokens += await` loses updates
            latencies.append(time.perf_counter() - started)
            tokens += produced

    started = time.perf_counter()
    await asyncio.gather(*(client(prompts[i::clients]) for i in range(clients)))
    wall = time.perf_counter() - started
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    return {"p50": cuts[49] * 1000, "p95": cuts[94] * 1000, "tok_s": tokens / wall}


async def run(model: Any, tokenizer: Any, teacher_s: float, per_client: int) -> list[str]:
    setups = {
        "student, dynamic batching (2 ms, max 16)": StudentSettings(),
        "student, no batching (window 0, max 1)": StudentSettings(
            batch_window_ms=0, max_batch_size=1
        ),
    }
    lines = []
    for label, settings in setups.items():
        student = InProcessStudent(model, tokenizer, name=ROUTE, version=1, settings=settings)

        async def call(payload: dict[str, Any], s: InProcessStudent = student) -> int:
            result = await s.complete(payload)
            return int(result.response["usage"]["completion_tokens"])

        await measure(call, 4, 2)  # warm-up
        for clients in CLIENTS:
            before = student.stats.sizes.copy()
            row = await measure(call, clients, per_client)
            sizes = student.stats.sizes - before
            mean = sum(k * v for k, v in sizes.items()) / max(1, sum(sizes.values()))
            lines.append(_line(label, clients, row, f"mean batch {mean:.1f}"))
        student.close()

    async def teacher(payload: dict[str, Any]) -> int:
        await asyncio.sleep(teacher_s)
        return 0

    for clients in CLIENTS:
        row = await measure(teacher, clients, per_client)
        label = f"fake teacher (SIMULATED {teacher_s * 1000:.0f} ms sleep)"
        lines.append(_line(label, clients, row, "tokens/s not measured"))
    return lines


def _line(label: str, clients: int, row: dict[str, float], note: str) -> str:
    tok_s = f"{row['tok_s']:.0f}" if row["tok_s"] else "-"
    return f"| {label} | {clients} | {row['p50']:.1f} | {row['p95']:.1f} | {tok_s} | {note} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher-ms", type=float, default=300.0, help="simulated teacher")
    parser.add_argument("--requests-per-client", type=int, default=4)
    parser.add_argument("--data-dir", type=Path, help="use a registered student instead")
    parser.add_argument("--version", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        data_dir, version = args.data_dir, args.version
        if data_dir is None:
            data_dir = Path(tmp)
            version = train_student(data_dir)
        model, tokenizer = load_student(student_dir(data_dir, ROUTE, version), device="cpu")
    params = sum(p.numel() for p in model.parameters())
    lines = asyncio.run(run(model, tokenizer, args.teacher_ms / 1000, args.requests_per_client))
    print(f"\nStudent: {params / 1e6:.2f}M params, max_tokens 32, torch threads {args.threads}\n")
    print("| backend | clients | p50 ms | p95 ms | tokens/s | note |")
    print("|---|---|---|---|---|---|")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
