"""The retrain schedule of a running server: when a route has enough new sealed rows (or
enough time has passed, or drift asked), curate and retrain it in a child process.

The decision is `retrain.schedule.decide` (pure, tested with a fake clock); this module only
gathers its inputs on each `tick`, starts the child (never two at once for a route), keeps the
child's output in a log file beside the students, and records the outcome in metrics. Which
command runs the job is the caller's (the shell's `apprentice.jobs`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from logbook.segments import segment_files
from monitoring.metrics import Metrics
from retrain.schedule import ScheduleState, decide, is_running
from retrain.settings import RetrainSettings
from retrain.students import students_root

log = logging.getLogger("apprentice.scheduler")


@dataclass
class RouteSchedule:
    running: asyncio.subprocess.Process | None = None
    waiter: asyncio.Task[None] | None = None
    last_run_at: datetime | None = None
    last_failed: bool = False
    forced: bool = False
    rows_when_asked: int = 0
    runs: int = 0


class Scheduler:
    """Starts curate+retrain jobs for routes whose schedule says so."""

    def __init__(
        self,
        data_dir: Path,
        routes: Mapping[str, RetrainSettings],
        metrics: Metrics,
        command: Callable[[str], list[str]],
        on_finished: Callable[[str], None] | None = None,
        stdin: Callable[[], bytes] | None = None,
    ) -> None:
        """`stdin()`, when given, is written to each job's stdin (its secrets: never argv,
        a file or the environment, which other local users' tools may read)."""
        self.data_dir, self.settings, self.metrics = data_dir, dict(routes), metrics
        self.command, self.on_finished, self.stdin = command, on_finished, stdin
        self.routes = {name: RouteSchedule() for name in routes}
        self._row_counts: dict[Path, int] = {}
        # "Every T hours" counts from the server's start until a first run has happened.
        self.started_at = datetime.now(UTC)

    def trigger(self, route: str) -> bool:
        """Run this route at the next tick whatever the row count; False if already running."""
        state = self.routes[route]
        if state.running is not None:
            return False
        state.forced = True
        state.rows_when_asked = self.new_rows(route)
        return True

    def close(self) -> None:
        """Stop the jobs still running (the server is going away)."""
        for state in self.routes.values():
            if state.running is not None and state.running.returncode is None:
                state.running.terminate()

    def status(self) -> dict[str, Any]:
        """Per route: whether a job runs now, runs so far, the last outcome, an ask pending."""
        return {
            name: {
                "running": state.running is not None,
                "runs": state.runs,
                "last_run_at": state.last_run_at,
                "last_failed": state.last_failed,
                "asked": state.forced,
            }
            for name, state in self.routes.items()
        }

    async def tick(self) -> None:
        now = datetime.now(UTC)
        for name, settings in self.settings.items():
            state = self.routes[name]
            if state.running is not None:
                continue
            rows = await asyncio.to_thread(self.new_rows, name)
            decision = decide(
                ScheduleState(
                    running=is_running(self.data_dir, name),
                    rows_since_last_dataset=rows,
                    last_run_at=state.last_run_at or self.started_at,
                    last_run_failed=state.last_failed,
                ),
                settings,
                now,
            )
            # Counted from the ask: the rows that prompted it (drift) are the ones to learn.
            asked = state.forced and rows - state.rows_when_asked >= settings.asked_min_new_rows
            if decision.run or asked:
                reason = decision.reason if decision.run else f"asked for, {rows} new rows"
                state.forced = False
                log.info("retrain %s: %s", name, reason)
                await self._start(name)

    def new_rows(self, route: str) -> int:
        """Rows sealed since the route's newest dataset was cut."""
        from curation.dataset import dataset_versions, read_manifest

        versions = dataset_versions(self.data_dir, route)
        used: set[str] = set()
        if versions:
            manifest = read_manifest(self.data_dir, route, versions[-1])
            used = set(manifest.get("source", {}).get("segments", []))
        total = 0
        for path in segment_files(self.data_dir, "requests", route):
            if str(path.relative_to(self.data_dir)) in used:
                continue
            if path not in self._row_counts:
                self._row_counts[path] = pq.read_metadata(path).num_rows
            total += self._row_counts[path]
        return total

    async def _start(self, route: str) -> None:
        state = self.routes[route]
        logs = students_root(self.data_dir, route) / "jobs"
        logs.mkdir(parents=True, exist_ok=True)
        log_path = logs / f"{datetime.now(UTC):%Y%m%dT%H%M%S}-retrain.log"
        out = log_path.open("wb")
        argv = self.command(route)
        secrets = self.stdin() if self.stdin is not None else None
        state.running = proc = await asyncio.create_subprocess_exec(
            *argv, stdout=out, stderr=asyncio.subprocess.STDOUT,
            stdin=asyncio.subprocess.DEVNULL if secrets is None else asyncio.subprocess.PIPE,
        )  # fmt: skip
        out.close()
        if secrets is not None and proc.stdin is not None:
            proc.stdin.write(secrets)
            with contextlib.suppress(ConnectionError):  # a child that died at once: its log says
                await proc.stdin.drain()
            proc.stdin.close()
        state.waiter = asyncio.create_task(self._wait(route, state.running, log_path))

    async def _wait(self, route: str, proc: asyncio.subprocess.Process, log_path: Path) -> None:
        started = time.monotonic()
        code = await proc.wait()
        state = self.routes[route]
        state.running = None
        state.runs += 1
        state.last_run_at = datetime.now(UTC)
        state.last_failed = code != 0
        outcome = "failed" if code else "finished"
        log.info("retrain %s %s in %.0f s (log: %s)", route, outcome, time.monotonic() - started,
                 log_path)  # fmt: skip
        self._record(route, code, log_path)
        if self.on_finished is not None:
            self.on_finished(route)

    def _record(self, route: str, code: int, log_path: Path) -> None:
        outcome: str = "failed"
        metrics: dict[str, Any] = {}
        if code == 0:
            try:
                result = json.loads(log_path.read_text().strip().splitlines()[-1])
            except (ValueError, IndexError):
                result = {}
            trained = result.get("retrain")
            if trained is None:
                outcome = "skipped"
            else:
                outcome = "registered" if trained.get("status") == "candidate" else "rejected"
                metrics = trained.get("metrics") or {}
        self.metrics.record_retrain(route, outcome, time.time())
        for name, value in metrics.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                self.metrics.eval_metric.labels(route, name).set(value)
