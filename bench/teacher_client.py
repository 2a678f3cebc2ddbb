"""CPU a teacher call costs the proxy, by HTTP client: aiohttp's (the teacher path's client
until it was replaced) against `proxy.upstream_client`, in one process on uvloop, calling the
fake teacher (its own process, on loopback) sequentially with the proxy's headers and timeouts.

CPU is this process's (`time.process_time`): the client's own work, the event loop and the
socket calls, which is what a call adds to the proxy's event loop. Rounds alternate between
the clients; the table shows medians over rounds.

    .venv/bin/python bench/teacher_client.py [--calls 3000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import orjson
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.loopback import free_port, start_fake_teacher
from proxy.upstream_client import HttpClient

HEADERS = {"content-type": "application/json", "accept-encoding": "identity",
           "authorization": "Bearer sk-bench"}  # fmt: skip
ASK = [{"role": "user", "content": "My order arrived broken"}]
BODY = orjson.dumps({"model": "fake-teacher-1", "messages": ASK})
Call = Callable[[], Awaitable[bytes]]


async def timed(call: Call, calls: int) -> tuple[float, float]:
    """(CPU us, wall us) a call, after 200 calls of warm-up."""
    for _ in range(200):
        await call()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for _ in range(calls):
        body = await call()
        assert b"choices" in body, body[:200]
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    return cpu / calls * 1e6, wall / calls * 1e6


async def lean(url: str, calls: int) -> tuple[float, float]:
    client = HttpClient()

    async def call() -> bytes:
        response = await client.request("POST", url, BODY, HEADERS, connect_timeout=10,
                                        read_timeout=600, total_timeout=600)  # fmt: skip
        parts = []
        while data := await response.read_any():
            parts.append(data)
        response.release()
        return b"".join(parts)

    try:
        return await timed(call, calls)
    finally:
        await client.close()


async def with_aiohttp(url: str, calls: int) -> tuple[float, float]:
    # As proxy/app.py built it, and proxy/teacher.py called it, before the change.
    connector = aiohttp.TCPConnector(limit=1000, limit_per_host=0, keepalive_timeout=30)
    session = aiohttp.ClientSession(connector=connector, auto_decompress=False,
                                    skip_auto_headers=("user-agent",))  # fmt: skip

    async def call() -> bytes:
        timeout = aiohttp.ClientTimeout(total=600, sock_connect=10, sock_read=600)
        response = await session.request("POST", url, data=BODY, headers=HEADERS,
                                         timeout=timeout, allow_redirects=False)  # fmt: skip
        parts = []
        async for data in response.content.iter_any():
            parts.append(data)
        response.release()
        return b"".join(parts)

    try:
        return await timed(call, calls)
    finally:
        await session.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    port = free_port()
    teacher = start_fake_teacher(port)
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    results: dict[str, list[tuple[float, float]]] = {"aiohttp": [], "proxy.upstream_client": []}
    try:
        for _ in range(args.rounds):
            results["aiohttp"].append(uvloop.run(with_aiohttp(url, args.calls)))
            results["proxy.upstream_client"].append(uvloop.run(lean(url, args.calls)))
    finally:
        teacher.terminate()
        teacher.wait(30)
    print(f"\nteacher client: {args.calls} sequential calls a round, {args.rounds} rounds, "
          "medians\n")  # fmt: skip
    print("| client | CPU us a call | wall us a call |")
    print("|---|---|---|")
    for name, rounds in results.items():
        cpu = statistics.median(r[0] for r in rounds)
        wall = statistics.median(r[1] for r in rounds)
        print(f"| {name} | {cpu:.0f} | {wall:.0f} |")


if __name__ == "__main__":
    main()
