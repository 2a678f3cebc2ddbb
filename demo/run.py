"""`apprentice demo`: the whole loop, offline, on this machine.

A simulated teacher (demo.teacher) stands in for the provider; `apprentice serve`
runs as its own process with the scheduler and automatic canary on; the official openai client
sends traffic as an application would. Nothing is faked past the teacher: sealing, curation,
training of the tiny base, the gate, shadow, canary steps, drift and rollback all run for real.

Phases: (1) teacher traffic until the first student is trained, (2) canary until it is
promoted, (3) shifted traffic (new phrasings and an intent the student never saw) until drift
takes the student out of traffic and a second student, trained on the new data, is promoted.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from demo import traffic
from demo.plan import ROUTE, DemoPlan, demo_config
from demo.task import Phase
from demo.teacher import SimulatedTeacher
from demo.view import DemoView, Status


@dataclass
class DemoOutcome:
    """What happened, read from the server (admin API, metrics) and the client's results."""

    data_dir: Path
    ok: bool
    results: list[traffic.RequestResult] = field(default_factory=list)
    canary: dict[str, Any] = field(default_factory=dict)
    students: list[dict[str, Any]] = field(default_factory=list)
    metrics_text: str = ""
    timeline: list[dict[str, Any]] = field(default_factory=list)
    phases: dict[str, float] = field(default_factory=dict)
    failed_phase: str | None = None
    started_wall: float = field(default_factory=time.time)
    shifted_at: float | None = None  # seconds after the start


class Server:
    """`apprentice serve` as a child process, and its admin API."""

    def __init__(self, config_path: Path, port: int, token: str, env: dict[str, str]) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.token = token
        log = (config_path.parent / "serve.log").open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "apprentice.cli", "serve", "--config", str(config_path)],
            env=os.environ | env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        self.http = httpx.AsyncClient(
            base_url=self.url, headers={"authorization": f"Bearer {token}"}, timeout=30
        )

    async def ready(self, deadline_s: float) -> None:
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("apprentice serve exited; see serve.log in the data dir")
            try:
                if (await self.http.get("/readyz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
        raise RuntimeError("apprentice serve did not become ready")

    async def admin(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        response = await self.http.request(method, f"/admin{path}", json=body)
        response.raise_for_status()
        return response.json()

    async def metrics(self) -> str:
        return (await self.http.get("/metrics")).text

    async def stop(self) -> None:
        await self.http.aclose()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()


async def run_demo(plan: DemoPlan, data_dir: Path, view: DemoView) -> DemoOutcome:
    """Run every phase; returns what happened (ok is False if a phase missed its deadline)."""
    outcome = DemoOutcome(data_dir=data_dir, ok=False)
    api_key, token = "sk-demo-" + secrets.token_hex(8), secrets.token_hex(16)
    with SimulatedTeacher(latency_s=plan.teacher_latency_s, ttft_s=plan.teacher_latency_s) as sim:
        port = _free_port()
        config_path = data_dir / "apprentice.toml"
        config_path.write_text(demo_config(plan, data_dir, port, sim))
        env = {
            "DEMO_CLIENT_KEY": api_key,
            "DEMO_ADMIN_TOKEN": token,
            "DEMO_TEACHER_KEY": "sk-sim-" + secrets.token_hex(8),
        }
        server = Server(config_path, port, token, env)
        try:
            await server.ready(60)
            view.console.print(console_line(server.url, token, data_dir), soft_wrap=True)
            await _phases(plan, server, api_key, view, outcome)
        finally:
            outcome.metrics_text = await _quietly(server.metrics(), "")
            outcome.canary = await _quietly(server.admin("GET", "/canary"), {})
            outcome.students = (await _quietly(server.admin("GET", "/students"), {})).get(
                "students", []
            )
            await server.stop()
    return outcome


async def _phases(
    plan: DemoPlan, server: Server, api_key: str, view: DemoView, outcome: DemoOutcome
) -> None:
    start = time.monotonic()
    stop = asyncio.Event()
    phase: list[Phase] = ["base"]

    def on_result(result: traffic.RequestResult) -> None:
        outcome.results.append(result)
        view.count(result)

    async def keep_driving() -> None:
        seed = 0
        while not stop.is_set():
            seed += 1
            # The application is quieter while a student trains: on two cores, training
            # beside full traffic took ~3x longer. (A real deployment trains elsewhere.)
            training = view.status.training
            await traffic.drive(
                server.url, api_key, ROUTE, phase=phase[0], requests=plan.batch,
                concurrency=2 if training else plan.concurrency, rng_seed=seed, stop=stop,
                on_result=on_result, feedback_share=0.1, bad_share=0.01, stream_share=0.25,
                think_s=0.1 if training else 0.0,
            )  # fmt: skip

    driver = asyncio.create_task(keep_driving())
    watcher = asyncio.create_task(_watch(server, view, outcome, start, stop))
    try:
        steps = [
            ("collect", plan.collect_s, lambda s: s.sealed_rows >= plan.first_rows),
            ("train", plan.train_s, lambda s: s.students >= 1),
            ("canary", plan.canary_s, lambda s: s.state == "promoted"),
        ]
        for name, limit, done in steps:
            if not await _until(view, name, limit, done, outcome, start):
                return
            if name == "collect":
                await server.admin("POST", "/jobs/retrain", {"route": ROUTE})
        phase[0] = "shifted"
        view.shifted_at = outcome.shifted_at = time.monotonic() - start
        if not await _until(view, "drift", plan.drift_s, lambda s: s.left_traffic, outcome,
                            start):  # fmt: skip
            return
        # As an operator would: a retrain the gate rejected, or a student the canary sent back,
        # is followed by another retrain (on more rows) rather than the end of the story.
        asked: set[int] = set()

        async def again(s: Status) -> None:
            version = int(s.newest.get("version") or 0)
            failed = s.newest.get("status") in ("rejected", "rolled_back") and version > 1
            if failed and not s.training and version not in asked:
                asked.add(version)
                view.phase = f"retrain again (v{version} was {s.newest.get('status')})"
                await _quietly(server.admin("POST", "/jobs/retrain", {"route": ROUTE}), {})

        steps = [
            ("retrain", plan.train_s, lambda s: s.usable >= 2),
            ("canary 2", plan.canary_s, lambda s: s.state == "promoted" and s.version != "v1"),
        ]
        for name, limit, done in steps:
            # Each retry earns the phase another training's worth of time.
            if not await _until(view, name, limit, done, outcome, start, again,
                                lambda: len(asked) * plan.train_s):  # fmt: skip
                return
        view.phase = "student serving"
        # Let the new student be seen taking the traffic: a while, and a number of answers (on
        # a loaded machine a fixed time alone shows little of it).
        before = view.served["student"]
        await asyncio.sleep(plan.tail_s)
        deadline = time.monotonic() + 5 * plan.tail_s  # a cascade defers some answers
        while view.served["student"] - before < plan.tail_requests:
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.25)
        outcome.ok = True
    finally:
        stop.set()
        await asyncio.gather(driver, watcher, return_exceptions=True)


async def _until(
    view: DemoView,
    name: str,
    limit: float,
    done: Any,
    outcome: DemoOutcome,
    start: float,
    nudge: Callable[[Status], Awaitable[None]] | None = None,
    extra: Callable[[], float] = lambda: 0.0,
) -> bool:
    """Wait until `done(status)`, `limit` seconds (plus `extra()`, which may grow); `nudge` is
    called on every look."""
    view.phase = name
    began = time.monotonic()
    while time.monotonic() < began + limit + extra():
        if done(view.status):
            outcome.phases[name] = time.monotonic() - start
            return True
        if nudge is not None:
            await nudge(view.status)
        await asyncio.sleep(0.25)
    outcome.failed_phase = name
    return False


async def _watch(
    server: Server, view: DemoView, outcome: DemoOutcome, start: float, stop: asyncio.Event
) -> None:
    while not stop.is_set():
        try:
            canary = (await server.admin("GET", "/canary"))["routes"][ROUTE]
            students = (await server.admin("GET", "/students"))["students"]
            jobs = (await server.admin("GET", "/jobs"))["routes"].get(ROUTE, {})
            view.status.training = bool(jobs.get("running"))
            view.observe(canary, students, await server.metrics(), time.monotonic() - start)
            outcome.timeline.append(view.point())
        except (httpx.HTTPError, KeyError):
            pass
        view.refresh()
        await asyncio.sleep(0.5)


async def _quietly(awaitable: Any, default: Any) -> Any:
    try:
        return await awaitable
    except (httpx.HTTPError, OSError):
        return default


def console_line(url: str, token: str, data_dir: Path) -> str:
    """Where to watch the demo in a browser. The admin token goes to a file only its owner
    can read, not to the terminal (a terminal's scrollback is a log)."""
    path = data_dir / "console-token"
    path.touch(mode=0o600)
    path.write_text(token + "\n")
    return f"console: {url}/ui/ (log in with the admin token in {path}; up while the demo runs)"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def data_dir_for(keep: Path | None) -> tuple[Path, bool]:
    """The demo's data dir: `keep` (kept), else a fresh temporary one (removed at the end)."""
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        return keep.resolve(), True
    return Path(tempfile.mkdtemp(prefix="apprentice-demo-")), False


def remove(data_dir: Path) -> None:
    shutil.rmtree(data_dir, ignore_errors=True)
