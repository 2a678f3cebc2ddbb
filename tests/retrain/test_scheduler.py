"""The retrain schedule inside serve: rows counted from sealed segments, asks, child jobs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from apprentice.config import config_from_dict
from apprentice.jobs import job_command, job_secrets, with_secrets
from logbook.segments import segment_files
from logbook.settings import LogbookSettings
from logbook.writer import Logbook
from monitoring.metrics import Metrics
from retrain.scheduler import Scheduler
from tests.logbook.rows import Row


async def seal_rows(data_dir: Path, ids: range) -> None:
    logbook = Logbook(data_dir, LogbookSettings(), Metrics())
    await logbook.open(background=False)
    for i in ids:
        logbook.submit(Row(f"id{i}", route="triage"))
    await logbook.close()


def scheduler(data_dir: Path, **retrain: object) -> Scheduler:
    config = config_from_dict(
        {
            "data_dir": str(data_dir),
            "routes": [{"name": "triage", "teacher": "openai/x", "retrain": retrain}],
        },
        {},
    )
    routes = {r.name: r.retrain for r in config.routes}
    return Scheduler(data_dir, routes, Metrics(), job_command(config))


async def test_new_rows_are_counted_since_the_newest_dataset(tmp_path: Path) -> None:
    await seal_rows(tmp_path, range(0, 30))
    first = segment_files(tmp_path, "requests", "triage")
    await seal_rows(tmp_path, range(30, 40))
    sched = scheduler(tmp_path)
    assert sched.new_rows("triage") == 40
    # a dataset cut from the first segment: only the later rows are new
    version = tmp_path / "datasets" / "triage" / "v1"
    version.mkdir(parents=True)
    used = [str(p.relative_to(tmp_path)) for p in first]
    (version / "manifest.json").write_text(json.dumps({"source": {"segments": used}}))
    assert sched.new_rows("triage") == 10


async def test_an_ask_waits_for_rows_sealed_after_it_then_runs_a_child_job(
    tmp_path: Path,
) -> None:
    await seal_rows(tmp_path, range(0, 20))
    sched = scheduler(tmp_path, min_new_rows=1_000_000, asked_min_new_rows=5)
    await sched.tick()
    assert sched.routes["triage"].running is None  # 20 rows, far below min_new_rows
    assert sched.trigger("triage")
    await sched.tick()
    assert sched.routes["triage"].running is None  # nothing sealed since the ask yet
    await seal_rows(tmp_path, range(20, 26))
    await sched.tick()
    state = sched.routes["triage"]
    assert state.running is not None and state.waiter is not None
    await state.waiter
    # These rows hold no real requests: curation keeps none, so nothing is trained; the run
    # is recorded as skipped and its output kept beside the students.
    assert state.runs == 1 and state.running is None and not state.last_failed
    logs = list((tmp_path / "students" / "triage" / "jobs").glob("*-retrain.log"))
    assert len(logs) == 1 and '"status": "empty"' in logs[0].read_text()
    assert sched.metrics.retrain_runs.labels("triage", "skipped")._value.get() == 1


async def test_a_job_gets_the_store_keys_on_its_stdin_and_nowhere_else(tmp_path: Path) -> None:
    config = config_from_dict(
        {
            "data_dir": str(tmp_path),
            "store": {"url": "s3://bucket/apprentice", "endpoint_url": "http://127.0.0.1:9",
                      "access_key_id": "env:KEY_ID", "secret_access_key": "env:SECRET"},
            "routes": [{"name": "triage", "teacher": "openai/x", "retrain": {}}],
        },
        {"KEY_ID": "AKIA-test-key-id", "SECRET": "s3-secret-for-the-job"},
    )  # fmt: skip
    argv = job_command(config)("triage")
    written = (tmp_path / "jobs" / "config.json").read_text()
    assert "s3-secret-for-the-job" not in written and "s3-secret-for-the-job" not in argv
    # What the child rebuilds from the file and its stdin is the server's store, keys included.
    raw = with_secrets(json.loads(written), json.loads(job_secrets(config)))
    rebuilt = config_from_dict(raw, {})
    assert rebuilt.store == config.store
    # The scheduler writes them to the child's stdin (here a child that echoes it to its log).
    echo = [sys.executable, "-c", "import sys; print(sys.stdin.read())"]
    sched = Scheduler(tmp_path, {"triage": config.routes[0].retrain}, Metrics(),
                      lambda route: echo, stdin=lambda: job_secrets(config))  # fmt: skip
    await sched._start("triage")
    state = sched.routes["triage"]
    assert state.waiter is not None
    await state.waiter
    logs = list((tmp_path / "students" / "triage" / "jobs").glob("*-retrain.log"))
    assert json.loads(logs[0].read_text())["store"]["secret_access_key"] == "s3-secret-for-the-job"
