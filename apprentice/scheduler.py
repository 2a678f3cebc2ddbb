"""The retrain schedule inside `apprentice serve`: when a route has enough new sealed rows
(or enough time has passed), curate and retrain it in a child process.

The decision is `retrain.schedule.decide` (pure, tested with a fake clock); this module only
gathers its inputs, starts `python -m apprentice.jobs` (never two at once for a route), keeps
the child's output in a log file beside the students, and records the outcome in metrics.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from apprentice.config import Config
from apprentice.jobs import job_config_json
from apprentice.segments import segment_files
from apprentice.ticker import tick_until
from monitoring.metrics import Metrics

log = logging.getLogger("apprentice.scheduler")
TICK_S = 2.0


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
        config: Config,
        metrics: Metrics,
        on_finished: Callable[[str], None] | None = None,
    ) -> None:
        self.config, self.metrics, self.on_finished = config, metrics, on_finished
        self.routes = {r.name: RouteSchedule() for r in config.routes}
        self._config_file = config.data_dir / "jobs" / "config.json"
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

    async def run(self, stop: asyncio.Event) -> None:
        self._config_file.parent.mkdir(parents=True, exist_ok=True)
        self._config_file.write_text(job_config_json(self.config))
        await tick_until(stop, TICK_S, self.tick, log)
        for state in self.routes.values():
            if state.running is not None and state.running.returncode is None:
                state.running.terminate()

    async def tick(self) -> None:
        from retrain.schedule import ScheduleState, decide, is_running

        now = datetime.now(UTC)
        for route in self.config.routes:
            state = self.routes[route.name]
            if state.running is not None:
                continue
            rows = await asyncio.to_thread(self.new_rows, route.name)
            decision = decide(
                ScheduleState(
                    running=is_running(self.config.data_dir, route.name),
                    rows_since_last_dataset=rows,
                    last_run_at=state.last_run_at or self.started_at,
                    last_run_failed=state.last_failed,
                ),
                route.retrain,
                now,
            )
            # Counted from the ask: the rows that prompted it (drift) are the ones to learn.
            asked = (
                state.forced and rows - state.rows_when_asked >= route.retrain.asked_min_new_rows
            )
            if decision.run or asked:
                reason = decision.reason if decision.run else f"asked for, {rows} new rows"
                state.forced = False
                log.info("retrain %s: %s", route.name, reason)
                await self._start(route.name)

    def new_rows(self, route: str) -> int:
        """Rows sealed since the route's newest dataset was cut."""
        from curation.dataset import dataset_versions, read_manifest

        versions = dataset_versions(self.config.data_dir, route)
        used: set[str] = set()
        if versions:
            manifest = read_manifest(self.config.data_dir, route, versions[-1])
            used = set(manifest.get("source", {}).get("segments", []))
        total = 0
        for path in segment_files(self.config.data_dir, "requests", route):
            if str(path.relative_to(self.config.data_dir)) in used:
                continue
            if path not in self._row_counts:
                self._row_counts[path] = pq.read_metadata(path).num_rows
            total += self._row_counts[path]
        return total

    async def _start(self, route: str) -> None:
        state = self.routes[route]
        logs = self.config.data_dir / "students" / route / "jobs"
        logs.mkdir(parents=True, exist_ok=True)
        log_path = logs / f"{datetime.now(UTC):%Y%m%dT%H%M%S}-retrain.log"
        out = log_path.open("wb")
        state.running = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "apprentice.jobs", "--config-json", str(self._config_file),
            "--route", route, stdout=out, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        out.close()
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
