"""Requests/s through `apprentice serve --workers 1` and `--workers 2`, at 64 clients, in one run.

Each target is a real `apprentice serve` (capture, journal, canary loop, the SQLite control
plane) in front of the tests' fake teacher in a process of its own, answering at once. The
client keeps one HTTP/1.1 connection per client (bench/loopback.py), so the kernel spreads the
64 connections over the workers that share the port (SO_REUSEPORT). Every row is captured as
in production; the table also says how many rows each run sealed, all of them.

    .venv/bin/python bench/workers.py [--seconds 10] [--clients 64] [--workers 1,2]

On a machine with two cores the client, the fake teacher and the workers share them, so a
second worker can add at most what the first leaves idle: read the ratio with that in mind.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.loopback import Connection, free_port, start_fake_teacher, start_process
from logbook.segments import open_segments

KEY = "sk-bench-client"
BODY = b'{"model": "triage", "messages": [{"role": "user", "content": "request %d"}]}'


def write_config(path: Path, data_dir: Path, port: int, teacher_port: int) -> None:
    path.write_text(f"""
data_dir = "{data_dir}"
[server]
port = {port}
api_keys = ["env:BENCH_CLIENT_KEY"]
[logbook]
seal_interval_s = 3600
[[routes]]
name = "triage"
teacher = "openai/fake-teacher-1"
teacher_api_base = "http://127.0.0.1:{teacher_port}/v1"
teacher_api_key = "env:BENCH_TEACHER_KEY"
input_cost_per_mtok = 1.0
output_cost_per_mtok = 2.0
""")


async def throughput(port: int, clients: int, seconds: float) -> tuple[float, int]:
    headers = {"authorization": f"Bearer {KEY}"}
    done = 0
    warm_until = time.perf_counter() + 1.0
    stop = warm_until + seconds

    async def client(c: int) -> None:
        nonlocal done
        conn = Connection("127.0.0.1", port)
        i = 0
        while (now := time.perf_counter()) < stop:
            status, _ = await conn.post("/v1/chat/completions", BODY % (c * 10**6 + i), headers)
            assert status == 200, status
            done += now >= warm_until
            i += 1
        conn.close()

    await asyncio.gather(*(client(c) for c in range(clients)))
    return done / seconds, done


def run(
    workers: int, teacher_port: int, work: Path, clients: int, seconds: float
) -> dict[str, str]:
    port, data = free_port(), work / f"w{workers}"
    config = work / f"w{workers}.toml"
    write_config(config, data, port, teacher_port)
    env = {"BENCH_CLIENT_KEY": KEY, "BENCH_TEACHER_KEY": "sk-bench-teacher"}
    proc = start_process(
        [sys.executable, "-m", "apprentice.cli", "serve", "--config", str(config), "--workers",
         str(workers), "--log-level", "info"],
        f"http://127.0.0.1:{port}/readyz", env=env, log=work / f"w{workers}.log",
    )  # fmt: skip
    try:
        log, deadline = work / f"w{workers}.log", time.monotonic() + 60
        while log.read_text().count("Application startup complete.") < workers:
            assert time.monotonic() < deadline, "the workers did not all start"
            time.sleep(0.1)  # every worker listening, not only the first one to answer
        rps, counted = asyncio.run(throughput(port, clients, seconds))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(120)
    sealed = open_segments(data).execute("SELECT count(*) FROM requests").fetchone()
    return {"workers": str(workers), "req/s": f"{rps:.0f}", "requests measured": str(counted),
            "rows sealed (all requests)": str(sealed[0] if sealed else 0)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--workers", default="1,2")
    args = parser.parse_args()
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    with tempfile.TemporaryDirectory() as tmp:
        teacher_port = free_port()
        teacher = start_fake_teacher(teacher_port)
        try:
            rows = [run(int(n), teacher_port, Path(tmp), args.clients, args.seconds)
                    for n in args.workers.split(",")]  # fmt: skip
        finally:
            teacher.terminate()
            teacher.wait(30)
    base = float(rows[0]["req/s"])
    print(f"\nserve --workers: {args.clients} clients, {args.seconds:g} s each (after 1 s of "
          f"warm-up), fake teacher answering at once, {os.cpu_count()} CPUs\n")  # fmt: skip
    cols = [*rows[0], "vs first"]
    print("| " + " | ".join(cols) + " |")
    print("|" + "|".join("---" for _ in cols) + "|")
    for row in rows:
        print("| " + " | ".join([*row.values(), f"{float(row['req/s']) / base:.2f}x"]) + " |")


if __name__ == "__main__":
    main()
