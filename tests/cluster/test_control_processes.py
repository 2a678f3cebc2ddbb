"""The control plane shared by processes (spawned, as `serve --workers N` and replicas on
other hosts are), on SQLite and PostgreSQL."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from typing import Any

import pytest

from cluster.control import ControlPlane
from cluster.counters import sum_counters
from tests.cluster import workers
from tests.cluster.polling import poll

TTL_S = 2.0
CHECKS_S = 2.5  # how long both contenders are watched together
TAKEOVER_MARGIN_S = 1.5  # beyond the ttl: one renewal period, a round trip, a loaded machine

spawn = multiprocessing.get_context("spawn")


def _errors(queue: Any) -> list[str]:
    out = []
    while not queue.empty():
        out.append(queue.get())
    return out


def test_two_processes_one_leader_at_every_check_and_takeover_after_a_kill(
    control_url: str, control: ControlPlane
) -> None:
    names = ("p0", "p1")
    held = [spawn.Value("d", 0.0, lock=False) for _ in names]
    stop, errors = spawn.Event(), spawn.Queue()
    procs = [
        spawn.Process(target=workers.contend, args=(control_url, n, TTL_S, h, stop, errors))
        for n, h in zip(names, held, strict=True)
    ]
    for p in procs:
        p.start()
    try:

        def leaders() -> list[int]:
            # Read every claim first, then the clock: a claim still valid at `now` was made
            # before any rival could have been granted the lease.
            claims = [h.value for h in held]
            now = time.monotonic()
            return [i for i, until in enumerate(claims) if until > now]

        first = poll(leaders, "a first leader", deadline_s=60)
        assert len(first) == 1
        deadline = time.monotonic() + CHECKS_S
        checks = 0
        while time.monotonic() < deadline:
            now_leaders = leaders()
            assert len(now_leaders) == 1, f"leaders {now_leaders} at check {checks}"
            lease = control.lease("leader")
            assert lease is not None and lease.holder in names
            checks += 1
            time.sleep(0.01)
        assert checks > 20

        (leader,) = leaders()
        survivor = 1 - leader
        killed_at = time.monotonic()
        os.kill(procs[leader].pid or 0, signal.SIGKILL)
        procs[leader].join(10)
        dead_until = held[leader].value  # its last claim: final, the process is gone
        poll(lambda: leaders() == [survivor], "the survivor to take over", TTL_S + 10)
        taken_at = time.monotonic()
        assert taken_at >= dead_until, "the lease was granted while the dead one's ran"
        assert taken_at - killed_at <= TTL_S + TAKEOVER_MARGIN_S
        lease = control.lease("leader")
        assert lease is not None and lease.holder == names[survivor]
    finally:
        stop.set()
        for p in procs:
            p.join(10)
            if p.is_alive():
                p.kill()
    assert _errors(errors) == []
    assert procs[survivor].exitcode == 0


@pytest.mark.timeout(120)
def test_two_processes_writing_at_once_lose_no_update_and_see_no_lock_error(
    control_url: str, control: ControlPlane
) -> None:
    rounds = 150
    errors, spans, start = spawn.Queue(), spawn.Queue(), spawn.Barrier(2)
    procs = [
        spawn.Process(target=workers.hammer, args=(control_url, name, rounds, start, errors, spans))
        for name in ("w0", "w1")
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(100)
    assert _errors(errors) == [], "a writer failed (e.g. 'database is locked')"
    assert [p.exitcode for p in procs] == [0, 0]
    (_, a0, a1), (_, b0, b1) = spans.get(timeout=5), spans.get(timeout=5)
    assert max(a0, b0) < min(a1, b1), "the writers did not overlap: nothing was contended"

    counter = control.snapshots()["counter"]
    assert counter.snapshot == {"count": 2 * rounds}  # no lost update
    assert counter.version == 2 * rounds
    history = control.history("counter")
    assert sorted((t["by"], t["i"]) for t in history) == sorted(
        (w, i) for w in ("w0", "w1") for i in range(rounds)
    )
    rows = control.traffic("triage", since=0)
    assert len(rows) == 2 * rounds
    expected_buckets = [2 * sum(range(rounds)), 2 * rounds]
    assert sum_counters(r["counters"] for r in rows) == {
        "requests": 2 * rounds,
        "buckets": expected_buckets,
    }
    assert {r["replica"] for r in control.replicas(max_age_s=600)} == {"w0", "w1"}
