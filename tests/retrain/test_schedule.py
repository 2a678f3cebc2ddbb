from __future__ import annotations

import os
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from retrain.schedule import RetrainBusy, ScheduleState, decide, is_running, route_lock
from retrain.settings import RetrainSettings

T0 = datetime(2026, 1, 1, 12, 0)


class FakeClock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


def test_trigger_by_rows_and_by_time_with_a_fake_clock() -> None:
    settings = RetrainSettings(min_new_rows=500, every_hours=6)
    clock = FakeClock(T0)
    last = ScheduleState(running=False, rows_since_last_dataset=0, last_run_at=T0)
    assert not decide(last, settings, clock.now).run  # nothing new

    few = ScheduleState(False, 120, T0)
    assert not decide(few, settings, clock.advance(hours=1)).run  # too few, too soon
    assert decide(ScheduleState(False, 500, T0), settings, clock.now).run  # enough rows
    assert decide(few, settings, clock.advance(hours=5)).run  # 6 h with some rows

    idle = ScheduleState(False, 0, T0)
    assert not decide(idle, settings, clock.advance(hours=48)).run  # time alone is not enough


def test_never_two_at_once_and_off_switch() -> None:
    busy = ScheduleState(running=True, rows_since_last_dataset=10_000, last_run_at=None)
    assert decide(busy, RetrainSettings(), T0).reason.startswith("a retrain")
    assert not decide(busy, RetrainSettings(), T0).run
    ready = ScheduleState(False, 10_000, None)
    assert not decide(ready, RetrainSettings(schedule=False), T0).run


def test_rows_only_when_no_period() -> None:
    settings = RetrainSettings(min_new_rows=100, every_hours=None)
    assert not decide(ScheduleState(False, 99, None), settings, T0).run
    assert decide(ScheduleState(False, 100, None), settings, T0).run


def test_failed_run_is_retried_after_a_pause() -> None:
    clock = FakeClock(T0)
    failed = ScheduleState(False, 0, last_run_at=T0, last_run_failed=True)
    assert not decide(failed, RetrainSettings(), clock.advance(minutes=5)).run
    assert decide(failed, RetrainSettings(), clock.advance(minutes=30)).run


def test_route_lock_excludes_a_second_run_and_clears_stale_locks(tmp_path: Path) -> None:
    with route_lock(tmp_path, "r"):
        assert is_running(tmp_path, "r")
        with pytest.raises(RetrainBusy), route_lock(tmp_path, "r"):
            pass
    assert not is_running(tmp_path, "r")
    # A lock left by a dead process does not block the next run.
    lock = tmp_path / "students" / "r" / ".retrain.lock"
    lock.write_text(str(2**22 + os.getpid()))  # beyond pid_max on this machine: not alive
    with route_lock(tmp_path, "r"):
        assert lock.read_text() == str(os.getpid())
