"""Latency apprentice adds to a teacher call, next to LiteLLM's proxy, in one run.

Three targets answer the same requests, each its own process on loopback: the fake teacher
directly, `apprentice serve` (capture on), and LiteLLM's proxy (installed by this script into
bench/.litellm-venv, logging off). Sequential requests go round-robin across the targets, in a new
random order each round, so machine noise hits all of them alike; added latency = target
percentile - teacher percentile.
Then each target gets 32 concurrent clients for a few seconds. `--baseline DIR` adds
apprentice run from another checkout of the code (its own `PYTHONPATH`) as one more target,
so that a change is measured against its base in the same run.

    .venv/bin/python bench/proxy_overhead.py [--requests 2000] [--skip-litellm] [--baseline DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.loopback import (
    ROOT,
    Connection,
    free_port,
    percentile,
    start_fake_teacher,
    start_process,
)

LITELLM_VENV = ROOT / "bench" / ".litellm-venv"
KEY = "sk-bench-7f3a9c1e5b2d4f6a8c0e1b3d5f7a9c2e"
T = TypeVar("T")


def body(stream: bool, i: int) -> bytes:
    messages = [
        {"role": "system", "content": "Classify the support message."},
        {"role": "user", "content": f"My order {i} arrived broken, what now?"},
    ]
    return orjson.dumps({"model": "triage", "messages": messages, "stream": stream})


def start_apprentice(
    teacher_port: int, workdir: Path, priced: bool = True, code: Path | None = None
) -> tuple[subprocess.Popen[bytes], int]:
    """`apprentice serve` on the fake teacher; `priced=False` is a self-hosted teacher, a model
    litellm's price table does not know; `code`: run the apprentice of that checkout."""
    port = free_port()
    name = ("priced" if priced else "unpriced") + ("-baseline" if code else "")
    config = workdir / f"apprentice-{name}.toml"
    prices = "input_cost_per_mtok = 0.15\noutput_cost_per_mtok = 0.6\n" if priced else ""
    config.write_text(
        f'data_dir = "{workdir / name}"\n[server]\nport = {port}\napi_keys = ["{KEY}"]\n'
        f'[[routes]]\nname = "triage"\nteacher = "openai/fake-teacher-1"\n'
        f'teacher_api_base = "http://127.0.0.1:{teacher_port}/v1"\nteacher_api_key = "x"\n' + prices
    )
    args = [str(ROOT / ".venv/bin/apprentice"), "serve", "--config", str(config),
            "--log-level", "warning"]  # fmt: skip
    log = workdir / f"apprentice-{name}.log"
    env = {"PYTHONPATH": str(code.resolve())} if code else None
    proc = start_process(args, f"http://127.0.0.1:{port}/readyz", env=env, log=log)
    return proc, port


def ensure_litellm() -> Path:
    binary = LITELLM_VENV / "bin" / "litellm"
    if not binary.exists():
        print("installing litellm[proxy] into bench/.litellm-venv (once) ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(LITELLM_VENV)], check=True)
        subprocess.run(
            [str(LITELLM_VENV / "bin/pip"), "install", "-q", "litellm[proxy]"], check=True
        )
    return binary


def start_litellm(teacher_port: int, workdir: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    config = workdir / "litellm.yaml"
    config.write_text(
        "model_list:\n  - model_name: triage\n    litellm_params:\n"
        f"      model: openai/fake-teacher-1\n      api_base: http://127.0.0.1:{teacher_port}/v1\n"
        "      api_key: x\n"
        "litellm_settings:\n  turn_off_message_logging: true\n  set_verbose: false\n"
        "  telemetry: false\n"
        "general_settings:\n  disable_spend_logs: true\n  disable_error_logs: true\n"
        f"  master_key: {KEY}\n"
    )
    args = [str(ensure_litellm()), "--config", str(config), "--port", str(port),
            "--num_workers", "1", "--telemetry", "False"]  # fmt: skip
    env = {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR"}
    proc = start_process(
        args, f"http://127.0.0.1:{port}/health/liveliness", env=env,
        log=workdir / "litellm.log", timeout=180,
    )  # fmt: skip
    return proc, port


def shuffled(items: list[T], rng: random.Random) -> list[T]:
    """`items` in a new order: each target follows each other one equally often. (The target
    after a slow one meets processes the scheduler has let go cold; a fixed order, even one
    rotating each round, charged that to the same target, by 0.5 ms and more on a loaded
    machine: two identical apprentice targets differed by that much.)"""
    return rng.sample(items, len(items))


async def sequential(targets: dict[str, int], n: int, stream: bool) -> dict[str, list[float]]:
    conns = {name: Connection("127.0.0.1", port) for name, port in targets.items()}
    times: dict[str, list[float]] = {name: [] for name in targets}
    headers = {"authorization": f"Bearer {KEY}"}
    order, rng = list(conns.items()), random.Random(0)
    for i in range(n + 100):  # the first 100 rounds warm up connections and caches
        for name, conn in shuffled(order, rng):
            t0 = time.perf_counter()
            status, data = await conn.post("/v1/chat/completions", body(stream, i), headers)
            elapsed = time.perf_counter() - t0
            assert status == 200 and (b"[DONE]" in data if stream else b"choices" in data), data
            if i >= 100:
                times[name].append(elapsed * 1000)
    for conn in conns.values():
        conn.close()
    return times


# Each surface: its path, a request body, and bytes its answer must hold.
SURFACES: dict[str, tuple[str, Callable[[int], dict[str, Any]], bytes]] = {
    "chat": ("/v1/chat/completions", lambda i: orjson.loads(body(False, i)), b'"choices"'),
    "chat, streamed": ("/v1/chat/completions", lambda i: orjson.loads(body(True, i)),
                       b"[DONE]"),
    "responses": ("/v1/responses", lambda i: {"model": "triage",
                                              "input": f"My order {i} arrived broken"},
                  b'"output"'),
    "responses, streamed": ("/v1/responses", lambda i: {"model": "triage", "stream": True,
                                                        "input": f"My order {i} broke"},
                            b"response.completed"),
    "embeddings": ("/v1/embeddings", lambda i: {"model": "triage", "input": f"order {i}"},
                   b'"embedding"'),
}  # fmt: skip


async def per_surface(targets: dict[str, int], n: int) -> dict[str, dict[str, list[float]]]:
    """Sequential latencies of each surface on each target, round-robin, after a warm-up."""
    conns = {name: Connection("127.0.0.1", port) for name, port in targets.items()}
    headers = {"authorization": f"Bearer {KEY}"}
    out: dict[str, dict[str, list[float]]] = {s: {t: [] for t in targets} for s in SURFACES}
    rng = random.Random(0)
    for surface, (path, make, expect) in SURFACES.items():
        for i in range(n + 50):
            for name, conn in shuffled(list(conns.items()), rng):
                t0 = time.perf_counter()
                status, data = await conn.post(path, orjson.dumps(make(i)), headers)
                elapsed = time.perf_counter() - t0
                assert status == 200 and expect in data, (surface, name, data[:300])
                if i >= 50:
                    out[surface][name].append(elapsed * 1000)
    for conn in conns.values():
        conn.close()
    return out


def print_surfaces(times: dict[str, dict[str, list[float]]]) -> None:
    print("| surface | teacher direct p50 ms | apprentice p50 ms | added p50 ms | added p99 ms |")
    print("|---|---|---|---|---|")
    for surface, by_target in times.items():
        base, mine = by_target["teacher direct"], by_target["apprentice"]
        print(f"| {surface} | {percentile(base, 0.5):.2f} | {percentile(mine, 0.5):.2f} | "
              f"{percentile(mine, 0.5) - percentile(base, 0.5):.2f} | "
              f"{percentile(mine, 0.99) - percentile(base, 0.99):.2f} |")  # fmt: skip


async def throughput(port: int, clients: int, seconds: float) -> float:
    headers = {"authorization": f"Bearer {KEY}"}
    done = 0
    stop = time.perf_counter() + seconds

    async def worker(w: int) -> None:
        nonlocal done
        conn = Connection("127.0.0.1", port)
        i = 0
        while time.perf_counter() < stop:
            status, _ = await conn.post("/v1/chat/completions", body(False, w * 10**6 + i), headers)
            assert status == 200
            done += 1
            i += 1
        conn.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(clients)))
    return done / (time.perf_counter() - t0)


def report(seq: dict[bool, dict[str, list[float]]], rps: dict[str, float]) -> list[dict[str, str]]:
    rows = []
    for name in seq[False]:
        row = {"target": name}
        for stream in (False, True):
            kind = "stream" if stream else "non-stream"
            base, mine = seq[stream]["teacher direct"], seq[stream][name]
            p50, p99 = percentile(mine, 0.5), percentile(mine, 0.99)
            row[f"{kind} p50 ms"] = f"{p50:.2f}"
            row[f"{kind} p99 ms"] = f"{p99:.2f}"
            if name != "teacher direct":
                row[f"{kind} added p50 ms"] = f"{p50 - percentile(base, 0.5):.2f}"
                row[f"{kind} added p99 ms"] = f"{p99 - percentile(base, 0.99):.2f}"
            else:
                row[f"{kind} added p50 ms"] = row[f"{kind} added p99 ms"] = "-"
        row["req/s @32"] = f"{rps[name]:.0f}"
        rows.append(row)
    return rows


def print_table(rows: list[dict[str, str]]) -> None:
    cols = ["target", "non-stream p50 ms", "non-stream added p50 ms", "non-stream added p99 ms",
            "stream p50 ms", "stream added p50 ms", "stream added p99 ms", "req/s @32"]  # fmt: skip
    print("| " + " | ".join(cols) + " |")
    print("|" + "|".join("---" for _ in cols) + "|")
    for row in rows:
        print("| " + " | ".join(row[c] for c in cols) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="sequential requests a target")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=8.0, help="throughput run per target")
    parser.add_argument("--skip-litellm", action="store_true")
    parser.add_argument(
        "--surface-requests", type=int, default=1000, help="sequential requests per surface"
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--baseline", type=Path, help="another checkout of apprentice to measure beside this one"
    )
    args = parser.parse_args()
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        try:
            teacher_port = free_port()
            procs.append(start_fake_teacher(teacher_port))
            apprentice, apprentice_port = start_apprentice(teacher_port, work)
            procs.append(apprentice)
            unpriced, unpriced_port = start_apprentice(teacher_port, work, priced=False)
            procs.append(unpriced)
            targets = {"teacher direct": teacher_port, "apprentice": apprentice_port,
                       "apprentice, unpriced teacher": unpriced_port}  # fmt: skip
            if args.baseline is not None:
                base, base_port = start_apprentice(teacher_port, work, code=args.baseline)
                procs.append(base)
                targets["apprentice, baseline"] = base_port
            if not args.skip_litellm:
                litellm, litellm_port = start_litellm(teacher_port, work)
                procs.append(litellm)
                targets["litellm proxy"] = litellm_port
            seq = {s: asyncio.run(sequential(targets, args.requests, s)) for s in (False, True)}
            pair = {k: targets[k] for k in ("teacher direct", "apprentice")}
            surfaces = asyncio.run(per_surface(pair, args.surface_requests))
            rps = {
                name: asyncio.run(throughput(port, args.clients, args.seconds))
                for name, port in targets.items()
            }
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.wait(30)
        rows = report(seq, rps)
        print(f"\nproxy overhead: {args.requests} sequential requests a target (after 100 "
              f"warm-up), {args.clients} concurrent clients for {args.seconds:g} s\n")  # fmt: skip
        print_table(rows)
        print(f"\nper surface: {args.surface_requests} sequential requests each, teacher direct "
              "and apprentice round-robin\n")  # fmt: skip
        print_surfaces(surfaces)
        if args.json:
            args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
