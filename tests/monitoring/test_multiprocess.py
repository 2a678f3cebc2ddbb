"""/metrics under `serve --workers`: every worker's values, whichever worker renders them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from prometheus_client import multiprocess
from prometheus_client.parser import text_string_to_metric_families

WORKER = """
import sys
from monitoring.metrics import Metrics
m = Metrics(multiprocess_dir=sys.argv[1])
m.requests.labels("triage", "teacher", "ok").inc(int(sys.argv[2]))
m.request_duration.labels("triage", "teacher").observe(0.2)
m.capture_queue_depth.set(int(sys.argv[2]))
m.capture_degraded.set(float(sys.argv[3]))
m.set_canary_state("triage", sys.argv[4])
m.record_retrain("triage", "failed", 1.0)
m.record_retrain("triage", "failed", 2.0)
if sys.argv[5] == "render":
    sys.stdout.write(m.render().decode())
else:
    print("ready", flush=True)  # its values are in the shared files now
    sys.stdin.read()  # stay alive until the test has rendered
"""


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def run(folder: Path, *args: str) -> subprocess.Popen[str]:
    env = os.environ | {"PROMETHEUS_MULTIPROC_DIR": str(folder)}
    return subprocess.Popen(
        [sys.executable, "-c", WORKER, str(folder), *args],
        env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip


def test_counters_sum_and_gauges_combine_over_live_workers(tmp_path: Path) -> None:
    # One worker stays alive; a second renders: the sums include the first one's values.
    alive = run(tmp_path, "3", "1", "canary", "wait")
    try:
        assert alive.stdout is not None and alive.stdout.readline() == "ready\n"
        renderer = run(tmp_path, "4", "0", "shadow", "render")
        text, _ = renderer.communicate(timeout=60)
        assert renderer.returncode == 0
        got = samples(text)
        key = ("apprentice_requests_total", (("outcome", "ok"), ("route", "triage"),
                                             ("served_by", "teacher")))  # fmt: skip
        assert got[key] == 7  # 3 + 4
        assert got[("apprentice_request_duration_seconds_count",
                    (("route", "triage"), ("served_by", "teacher")))] == 2  # fmt: skip
        # The renderer has exited by the time we look again; while it ran it was live.
        assert got[("apprentice_capture_degraded", ())] == 1  # the worst live worker
        # The most recent canary state wins: the renderer set it last.
        state = {dict(k[1])["state"]: v for k, v in got.items()
                 if k[0] == "apprentice_canary_state"}  # fmt: skip
        assert state["shadow"] == 1 and state["canary"] == 0
        streak = ("apprentice_retrain_consecutive_failures", (("route", "triage"),))
        assert got[streak] == 2
    finally:
        alive.communicate(input="", timeout=60)
    # Both are gone: a live gauge of a dead worker is not summed once the supervisor says so.
    for proc in (alive, renderer):
        multiprocess.mark_process_dead(proc.pid, str(tmp_path))
    third = run(tmp_path, "5", "0", "idle", "render")
    text, _ = third.communicate(timeout=60)
    got = samples(text)
    assert got[("apprentice_capture_queue_depth", ())] == 5  # the dead workers' 3 and 4 left
    key = ("apprentice_requests_total", (("outcome", "ok"), ("route", "triage"),
                                         ("served_by", "teacher")))  # fmt: skip
    assert got[key] == 12  # counters keep the dead workers' counts: totals never go back
