"""What the child processes of test_control_processes.py run (spawned: importable, and
importing nothing but the control plane)."""

from __future__ import annotations

import time
import traceback
from multiprocessing.sharedctypes import Synchronized
from typing import Any

from cluster.control import ControlUnavailable, open_control

RENEW_EVERY_S = 0.05


def contend(url: str, holder: str, ttl_s: float, held_until: Synchronized[float],
            stop: Any, errors: Any) -> None:  # fmt: skip
    """Try for the lease, renewing, until `stop`; publish until when this process may act as
    leader (its own monotonic clock, which every process on the host shares)."""
    try:
        control = open_control(url, holder)
        while not stop.is_set():
            called = time.monotonic()
            try:
                held = control.acquire_lease("leader", holder, ttl_s)
            except ControlUnavailable:
                held = False
            # A holder may act only until ttl after it *called*: the lease can have been
            # granted at any moment during the call.
            held_until.value = called + ttl_s if held else 0.0
            time.sleep(RENEW_EVERY_S)
        control.close()
    except BaseException:
        errors.put(f"{holder}: {traceback.format_exc()}")
        raise


def hammer(url: str, replica: str, rounds: int, start: Any, errors: Any, spans: Any) -> None:
    """Write concurrently with another process: a counter by compare-and-set (retried on a
    lost race), a traffic row, a heartbeat and a lease attempt per round. `start` (a barrier)
    lines the processes up; `spans` gets when this one wrote, to check they overlapped."""
    try:
        control = open_control(url, replica)
        start.wait(60)
        began = time.monotonic()
        for i in range(rounds):
            while True:
                current = control.snapshots().get("counter")
                count = current.snapshot["count"] if current else 0
                version = current.version if current else None
                if control.write_snapshot(
                    "counter", version, {"count": count + 1}, [{"by": replica, "i": i}]
                ):
                    break
            control.publish_traffic(replica, None, {"triage": {"requests": 1, "buckets": [i, 1]}})
            control.heartbeat(replica, {"round": i})
            control.acquire_lease("leader", replica, 0.01)
        spans.put((replica, began, time.monotonic()))
        control.close()
    except BaseException:
        errors.put(f"{replica}: {traceback.format_exc()}")
        raise
