"""When to retrain a route (a pure decision, tested with a fake clock) and the per-route lock.

The server's scheduler gathers a `ScheduleState` per route on each tick and calls `decide`;
on a yes it runs curate then retrain in a subprocess. `route_lock` keeps a second run of the
same route (scheduler, CLI or admin endpoint) from starting while one is under way.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from retrain.settings import RetrainSettings
from retrain.students import students_root

RETRY_AFTER = timedelta(minutes=30)  # a failed run waits this long before the next try


class RetrainBusy(RuntimeError):
    """A retrain of this route is already running."""


@dataclass(frozen=True)
class ScheduleState:
    running: bool  # a retrain of this route is under way (route_lock held)
    rows_since_last_dataset: int  # rows sealed after the newest dataset's cut-off
    last_run_at: datetime | None  # when the last retrain finished, whatever its outcome
    last_run_failed: bool = False  # the last retrain raised (the next trigger retries it)


@dataclass(frozen=True)
class Decision:
    run: bool
    reason: str


def decide(state: ScheduleState, settings: RetrainSettings, now: datetime) -> Decision:
    """Whether to curate and retrain now. Pure: same inputs, same answer."""
    if not settings.schedule:
        return Decision(False, "schedule is off for this route")
    if state.running:
        return Decision(False, "a retrain of this route is already running")
    since = None if state.last_run_at is None else now - state.last_run_at
    if state.last_run_failed and (since is None or since >= RETRY_AFTER):
        return Decision(True, "retrying the last run, which failed")
    if state.rows_since_last_dataset <= 0:
        return Decision(False, "no new rows since the last dataset")
    if state.rows_since_last_dataset >= settings.min_new_rows:
        return Decision(
            True, f"{state.rows_since_last_dataset} new rows (>= {settings.min_new_rows})"
        )
    if settings.every_hours is not None:
        period = timedelta(hours=settings.every_hours)
        if since is None or since >= period:
            return Decision(True, f"{settings.every_hours:g} h passed with new rows")
    return Decision(
        False, f"{state.rows_since_last_dataset} new rows, waiting for more or for time"
    )


def _lock_path(data_dir: Path, route: str) -> Path:
    return students_root(data_dir, route) / ".retrain.lock"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_running(data_dir: Path, route: str) -> bool:
    """True while a live process holds the route's retrain lock."""
    path = _lock_path(data_dir, route)
    try:
        pid = int(path.read_text().strip() or 0)
    except (FileNotFoundError, ValueError):
        return False
    return pid > 0 and _pid_alive(pid)


@contextmanager
def route_lock(data_dir: Path, route: str) -> Iterator[None]:
    """Hold the route's retrain lock; raise RetrainBusy if a live process holds it."""
    path = _lock_path(data_dir, route)
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            break
        except FileExistsError:
            if is_running(data_dir, route):
                raise RetrainBusy(
                    f"A retrain of route {route!r} is already running; wait for it to finish."
                ) from None
            path.unlink(missing_ok=True)  # left by a process that died
    else:
        raise RetrainBusy(f"Could not take the retrain lock {path}; remove it if stale.")
    try:
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        yield
    finally:
        path.unlink(missing_ok=True)
