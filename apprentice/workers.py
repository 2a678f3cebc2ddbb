"""`apprentice serve --workers N`: N server processes on one host, behind one port.

Each worker is a whole `apprentice serve` with its own logbook shard: worker 0 keeps
`data_dir` itself (a single server's data stays where it was), worker i uses
`data_dir/workers/<i>`. They share the store (by default `data_dir`, where every shard seals
its segments under its own logbook identity) and a control plane that works across local
processes without a server (SQLite in WAL mode, `data_dir/control.sqlite3`, unless
`[cluster] control_url` names one). The kernel spreads connections over the workers
(`SO_REUSEPORT`); /metrics is summed over all of them (prometheus_client's multiprocess mode,
files under `data_dir/workers/metrics`), whichever worker answers the scrape.

This supervisor only starts, watches and stops. A worker that dies is started again, after a
pause that doubles while it keeps dying (1 s up to 30 s); SIGTERM or SIGINT is passed to every
worker, each of which stops accepting, finishes its in-flight requests and seals.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr

from apprentice.config import Config

log = logging.getLogger("apprentice.workers")
METRICS_ENV = "PROMETHEUS_MULTIPROC_DIR"
FIRST_PAUSE_S, LONGEST_PAUSE_S = 1.0, 30.0
STABLE_S = 60.0  # a worker up this long is healthy again: its next restart is quick


@dataclass(frozen=True)
class Slot:
    """Which worker this process is: `index` of `count`."""

    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> Slot:
        index, _, count = text.partition("/")
        slot = cls(int(index), int(count))
        if not 0 <= slot.index < slot.count:
            raise ValueError(f"worker {text!r} is not <index>/<count> with index < count")
        return slot

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def shard_dir(data_dir: Path, index: int) -> Path:
    """Where worker `index` keeps its logbook, journal and spill."""
    return data_dir if index == 0 else data_dir / "workers" / str(index)


def metrics_dir(data_dir: Path) -> Path:
    return data_dir / "workers" / "metrics"


def control_path(data_dir: Path) -> Path:
    """The embedded control plane's SQLite file."""
    return data_dir / "control.sqlite3"


class Supervisor:
    """Runs `count` workers of `command` (an `apprentice serve` command line) until stopped."""

    def __init__(self, command: list[str], data_dir: Path, count: int) -> None:
        if count < 1:
            raise ValueError("--workers must be at least 1")
        self.command, self.data_dir, self.count = command, data_dir, count
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self._stopping = threading.Event()
        self._pause = {i: FIRST_PAUSE_S for i in range(count)}
        self._started: dict[int, float] = {}
        self._due: dict[int, float] = {}  # a dead worker's restart time

    def run(self) -> int:
        """Start every worker and keep them running; the exit status once stopped."""
        metrics = metrics_dir(self.data_dir)
        shutil.rmtree(metrics, ignore_errors=True)  # a previous run's counters are not ours
        metrics.mkdir(parents=True)
        for index in range(self.count):
            self._start(index)
        previous = {
            sig: signal.signal(sig, lambda *_: self._stopping.set())
            for sig in (signal.SIGTERM, signal.SIGINT)
        }
        try:
            while not self._stopping.wait(0.2):
                self._watch()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            failed = self._stop_all()
        return 1 if failed else 0

    def _start(self, index: int) -> None:
        # prometheus_client reads its folder when it is imported, so it comes in the
        # environment; the worker's slot comes on its command line.
        env = os.environ | {METRICS_ENV: str(metrics_dir(self.data_dir))}
        command = [*self.command, "--worker", str(Slot(index, self.count))]
        # Each worker in its own process group: a terminal's Ctrl-C reaches the supervisor
        # alone, which stops the workers in order.
        proc = subprocess.Popen(command, env=env, start_new_session=True)
        self.procs[index], self._started[index] = proc, time.monotonic()
        log.info("worker %d of %d started (pid %d)", index, self.count, proc.pid)

    def _watch(self) -> None:
        now = time.monotonic()
        for index, proc in list(self.procs.items()):
            code = proc.poll()
            if code is None:
                if now - self._started[index] > STABLE_S:
                    self._pause[index] = FIRST_PAUSE_S
                continue
            if index not in self._due:
                self._forget(proc.pid)
                pause = self._pause[index]
                self._pause[index] = min(pause * 2, LONGEST_PAUSE_S)
                self._due[index] = now + pause
                log.error("worker %d (pid %d) exited with %s; starting it again in %g s",
                          index, proc.pid, code, pause)  # fmt: skip
            elif now >= self._due.pop(index):
                self._start(index)

    def _forget(self, pid: int) -> None:
        # A dead worker's live gauges (queue depth, degraded) must not be summed any more.
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid, str(metrics_dir(self.data_dir)))  # type: ignore[no-untyped-call]

    def _stop_all(self) -> bool:
        """SIGTERM every worker and wait for each; True when one did not stop cleanly."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        failed = False
        for index, proc in self.procs.items():
            code = proc.wait()
            if code not in (0, -signal.SIGTERM):
                log.error("worker %d stopped with %s", index, code)
                failed = True
        return failed


def worker_command(config_path: Path, log_level: str) -> list[str]:
    """The command line each worker runs (the supervisor adds `--worker <index>/<count>`)."""
    return [sys.executable, "-m", "apprentice.cli", "serve", "--config", str(config_path),
            "--log-level", log_level]  # fmt: skip


def worker_config(config: Config, slot: Slot) -> Config:
    """Worker `slot`'s configuration: its own logbook shard; the store and the control plane
    shared with the other workers (the supervisor's data_dir unless the config names them)."""
    home = config.data_dir
    store = config.store
    if store.url is None:
        store = store.model_copy(update={"url": str(home.resolve())})
    cluster = config.cluster
    if cluster.control_url is None:
        url = SecretStr(f"sqlite:///{control_path(home).resolve()}")
        cluster = cluster.model_copy(update={"control_url": url})
    return config.model_copy(
        update={"data_dir": shard_dir(home, slot.index), "store": store, "cluster": cluster}
    )
