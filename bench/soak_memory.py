"""Memory soak: RSS of `apprentice serve` over time under large request bodies and clients
that hang up mid-stream; it must level off and stay flat, not climb.

A real `apprentice serve` (capture, journal, canary loop and drift on, as in production) in
front of the tests' fake teacher in a process of its own. `--clients` clients call chat
completions back to back; `--large-share` of the bodies carry 10-200 KB of text (words drawn
from a large vocabulary with numbers and ids, as documents and logs are), `--disconnect-share`
of the calls stream and hang up after the first bytes. RSS (VmRSS of the server) is printed
every `--interval` seconds, then after `--idle` seconds without traffic.

    .venv/bin/python bench/soak_memory.py [--seconds 600] [--clients 32] [--capture on|off]

Read the growth after warm-up (first sample past `--warmup` to the end): a leak climbs all the
way; a bounded cache levels off.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.loopback import free_port, start_fake_teacher, start_process

KEY = "sk-bench-client"
VOCABULARY = 200_000  # distinct words a large body draws from


def write_config(path: Path, data_dir: Path, port: int, teacher_port: int, drift: str) -> None:
    path.write_text(f"""
data_dir = "{data_dir}"
[server]
port = {port}
api_keys = ["env:BENCH_CLIENT_KEY"]
max_body_bytes = 1048576
[logbook]
seal_interval_s = 60
[[routes]]
name = "triage"
teacher = "openai/fake-teacher-1"
teacher_api_base = "http://127.0.0.1:{teacher_port}/v1"
teacher_api_key = "env:BENCH_TEACHER_KEY"
input_cost_per_mtok = 1.0
output_cost_per_mtok = 2.0
[routes.drift]
enabled = {"true" if drift == "on" else "false"}
""")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def large_text(rng: random.Random) -> str:
    size = rng.randint(10_000, 200_000)
    words, length = [], 0
    while length < size:
        n = rng.randrange(VOCABULARY)
        word = f"w{n:x}" if n % 3 else f"id-{n * 7919 % 10**9}"
        words.append(word)
        length += len(word) + 1
    return " ".join(words)


class Load:
    def __init__(self, port: int, args: argparse.Namespace) -> None:
        self.url = f"http://127.0.0.1:{port}/v1/chat/completions"
        self.args = args
        self.done = self.failed = self.disconnected = 0
        self.stop = False

    async def client(self, c: int, http: aiohttp.ClientSession) -> None:
        rng = random.Random(c)
        headers = {"authorization": f"Bearer {KEY}", "content-type": "application/json"}
        if self.args.capture == "off":
            headers["x-apprentice-capture"] = "off"
        i = 0
        while not self.stop:
            i += 1
            large = rng.random() < self.args.large_share
            text = large_text(rng) if large else f"short question {c}-{i}"
            leave = rng.random() < self.args.disconnect_share
            body = orjson.dumps({"model": "triage", "stream": leave,
                                 "messages": [{"role": "user", "content": text}]})  # fmt: skip
            try:
                async with http.post(self.url, data=body, headers=headers) as response:
                    if leave:
                        await response.content.read(16)
                        response.close()  # hang up mid-stream
                        self.disconnected += 1
                        continue
                    await response.read()
                    self.done += response.status == 200
                    self.failed += response.status != 200
            except aiohttp.ClientError:
                self.failed += 1

    async def run(self, pid: int) -> list[tuple[float, int, float]]:
        samples: list[tuple[float, int, float]] = [(0.0, 0, rss_mb(pid))]
        connector = aiohttp.TCPConnector(limit=self.args.clients)
        async with aiohttp.ClientSession(connector=connector) as http:
            tasks = [asyncio.create_task(self.client(c, http)) for c in range(self.args.clients)]
            start = time.monotonic()
            while (elapsed := time.monotonic() - start) < self.args.seconds:
                await asyncio.sleep(min(self.args.interval, self.args.seconds - elapsed))
                samples.append((time.monotonic() - start, self.done, rss_mb(pid)))
                print(f"  {samples[-1][0]:6.0f} s  {self.done:7d} answered  "
                      f"{samples[-1][2]:7.0f} MB", flush=True)  # fmt: skip
            self.stop = True
            await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.sleep(self.args.idle)
        samples.append((time.monotonic() - start, self.done, rss_mb(pid)))
        return samples


def report(samples: list[tuple[float, int, float]], load: Load, args: argparse.Namespace) -> None:
    warm = next((s for s in samples if s[0] >= args.warmup), samples[-2])
    last, idle = samples[-2], samples[-1]
    print(f"\nMemory soak: {args.clients} clients, {args.seconds:g} s, {args.large_share:.0%} of "
          f"bodies 10-200 KB, {args.disconnect_share:.0%} hang up mid-stream, capture "
          f"{args.capture}, drift {args.drift}, {os.cpu_count()} CPUs\n")  # fmt: skip
    print("| at | answered | RSS MB |")
    print("|---|---|---|")
    for at, done, rss in samples[:-1]:
        print(f"| {at:.0f} s | {done} | {rss:.0f} |")
    print(f"| +{args.idle:g} s idle | {idle[1]} | {idle[2]:.0f} |")
    print(f"\nanswered {load.done}, failed {load.failed}, hung up {load.disconnected}")
    print(f"RSS start {samples[0][2]:.0f} MB, after warm-up ({warm[0]:.0f} s) {warm[2]:.0f} MB, "
          f"end {last[2]:.0f} MB, after idle {idle[2]:.0f} MB; growth after warm-up "
          f"{last[2] - warm[2]:+.0f} MB")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--large-share", type=float, default=0.2)
    parser.add_argument("--disconnect-share", type=float, default=0.05)
    parser.add_argument("--capture", choices=("on", "off"), default="on")
    parser.add_argument("--drift", choices=("on", "off"), default="on")
    parser.add_argument("--interval", type=float, default=30.0)
    parser.add_argument("--warmup", type=float, default=120.0)
    parser.add_argument("--idle", type=float, default=10.0)
    args = parser.parse_args()
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        teacher_port, port = free_port(), free_port()
        teacher = start_fake_teacher(teacher_port)
        write_config(work / "soak.toml", work / "data", port, teacher_port, args.drift)
        env = {"BENCH_CLIENT_KEY": KEY, "BENCH_TEACHER_KEY": "sk-bench-teacher"}
        server = start_process(
            [sys.executable, "-m", "apprentice.cli", "serve", "--config", str(work / "soak.toml")],
            f"http://127.0.0.1:{port}/readyz", env=env, log=work / "serve.log",
        )  # fmt: skip
        try:
            load = Load(port, args)
            samples = asyncio.run(load.run(server.pid))
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(120)
            teacher.terminate()
            teacher.wait(30)
    report(samples, load, args)


if __name__ == "__main__":
    main()
