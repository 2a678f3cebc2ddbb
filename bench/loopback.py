"""Benchmark plumbing: a lean HTTP/1.1 client, subprocess servers, and percentiles.

The client is a few lines of asyncio over one keep-alive connection per worker, so the
measuring side costs far less than the proxies being measured (httpx or the openai client
would add more than the overhead we are trying to see).
"""

from __future__ import annotations

import asyncio
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def median(values: list[float]) -> float:
    return statistics.median(values)


class Connection:
    """One keep-alive HTTP/1.1 connection: POST JSON, read the whole (chunked) answer."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def connect(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        sock = self.writer.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        if self.writer is None:
            await self.connect()
        assert self.reader is not None and self.writer is not None
        head = f"POST {path} HTTP/1.1\r\nhost: {self.host}\r\ncontent-type: application/json\r\n"
        head += f"content-length: {len(body)}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self.writer.write(head.encode() + b"\r\n" + body)
        status_line = await self.reader.readuntil(b"\r\n")
        status = int(status_line.split()[1])
        response_headers = {}
        while (line := await self.reader.readuntil(b"\r\n")) != b"\r\n":
            name, _, value = line.decode("latin-1").partition(":")
            response_headers[name.strip().lower()] = value.strip()
        if "content-length" in response_headers:
            return status, await self.reader.readexactly(int(response_headers["content-length"]))
        data = b""
        while True:  # chunked
            size = int((await self.reader.readuntil(b"\r\n")).strip(), 16)
            if size == 0:
                await self.reader.readuntil(b"\r\n")
                return status, data
            data += await self.reader.readexactly(size + 2)
            data = data[:-2]

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def start_process(
    args: list[str],
    ready_url: str,
    env: dict[str, str] | None = None,
    log: Path | None = None,
    timeout: float = 120.0,
) -> subprocess.Popen[bytes]:
    """Start a server and wait until `ready_url` answers 200."""
    out = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen(args, env=(os.environ | (env or {})), stdout=out, stderr=out, cwd=ROOT)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{args[0]} exited early; see {log}")
        try:
            if httpx.get(ready_url, timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"{args} not ready after {timeout} s; see {log}")


def start_fake_teacher(port: int, latency_s: float = 0.0) -> subprocess.Popen[bytes]:
    """The tests' fake teacher in a process of its own, listening on `port`."""
    args = [sys.executable, "-m", "tests.fakes.teacher", "--port", str(port)]
    args += ["--latency-s", str(latency_s)]
    return start_process(args, f"http://127.0.0.1:{port}/v1/models")
