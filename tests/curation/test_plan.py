"""The out-of-core plan gives what the in-memory pipeline gives, batch size aside."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from curation.pipeline import StageOutput, run_stages
from curation.plan import run_plan
from curation.scan import Resources, Scope
from curation.settings import CurationSettings
from curation.split import PriorEval
from logbook.segments import open_segments
from tests.curation.logged_rows import feedback_row, request_row, write_segment
from tests.curation.test_job import traffic


def wide_traffic() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """test_job's traffic plus tasks, near duplicates, a replayed id, rated copies and names."""
    rows, feedback = traffic()
    rng = random.Random(11)
    vocab = [f"term{i}" for i in range(300)]
    base = [" ".join(rng.sample(vocab, 30)) for _ in range(40)]
    for i, text in enumerate(base):
        words = text.split()
        words[rng.randrange(30)] = "changed"  # a near duplicate of its base
        task = "billing" if i % 2 else "support"
        rows.append(request_row(text, f"a{i}", minute=500 + i, task=task, session_hash=f"b{i}"))
        rows.append(request_row(" ".join(words), f"b{i}", minute=600 + i, task=task))
    names = ["Ana", "Bruno", "Chen", "Dara"]
    for i in range(80):
        name = names[i % 4]
        rows.append(
            request_row(f"where is the parcel {name} sent on day {i}", "soon", minute=700 + i)
        )
    rows.append(request_row("rated copy", "same", minute=800, request_id="copy-a"))
    rows.append(request_row("rated copy", "same", minute=801, request_id="copy-b"))
    rows.append(dict(rows[5], response=json.dumps({"choices": []})))  # replayed with a later seq
    feedback += [feedback_row("copy-a", -1.0), feedback_row("req-none", 1.0)]
    return rows, feedback


@pytest.fixture
def logged(tmp_path: Path) -> Path:
    rows, feedback = wide_traffic()
    write_segment(tmp_path, rows[:150], first_seq=1)
    write_segment(tmp_path, rows[150:], first_seq=1000)
    write_segment(tmp_path, feedback, table="feedback", first_seq=1)
    return tmp_path


def _in_memory(data_dir: Path, settings: CurationSettings, prior: PriorEval) -> StageOutput:
    con = open_segments(data_dir, "r")
    try:
        return run_stages(con, "r", settings, None, None, prior)
    finally:
        con.close()


def _summary(out: StageOutput) -> dict[str, Any]:
    def rows(pairs: list[Any]) -> list[tuple[Any, ...]]:
        return [(p.request_id, p.weight, p.cluster, p.group_id, sorted(p.group_members),
                 json.dumps(p.messages), json.dumps(p.answer)) for p in pairs]  # fmt: skip

    return {
        "rows_read": out.rows_read,
        "stages": [r.to_json() for r in out.reports],
        "train": rows(out.train),
        "eval": rows(out.evaluation),
        "clusters": [c.to_json() for c in out.clusters],
        "reference": out.reference.to_json(),
        "novel": out.novel.to_json(["x"]),
        "skipped": out.skipped,
    }


@pytest.mark.parametrize("batch_rows", [7, 20_000])
def test_the_plan_equals_the_in_memory_pipeline(logged: Path, batch_rows: int) -> None:
    settings = CurationSettings(
        cluster_cap_share=0.3, cluster_cap_min_rows=10, eval_min_rows=5, novel_min_rows=4
    )
    prior = PriorEval(request_ids=frozenset({"req-3"}))
    expected = _in_memory(logged, settings, prior)
    got = run_plan(logged, Scope("r"), settings, prior, Resources(batch_rows=batch_rows))
    assert _summary(got) == _summary(expected)
    stages = {r.name: r for r in got.reports}
    # the fixture really exercises what it claims to
    assert stages["select"].dropped["repeated_id"] == 1
    assert stages["dedupe"].dropped["near_duplicate"] > 0
    assert stages["feedback"].dropped["negative_feedback_copy"] == 1
    assert stages["balance"].dropped["cluster_cap"] > 0


def test_max_rows_bounds_what_a_version_keeps(logged: Path) -> None:
    settings = CurationSettings(max_rows=100, eval_min_rows=5)
    got = run_plan(logged, Scope("r"), settings, PriorEval())
    assert len(got.train) + len(got.evaluation) <= 100
    assert _summary(got) == _summary(_in_memory(logged, settings, PriorEval()))


def test_a_task_larger_than_the_fit_sample_is_clustered_by_assignment(logged: Path) -> None:
    settings = CurationSettings(cluster_cap_share=0.3, cluster_cap_min_rows=10)
    got = run_plan(logged, Scope("r"), settings, PriorEval(), Resources(fit_rows=30))
    kept = got.train + got.evaluation
    stages = {r.name: r for r in got.reports}
    assert all(p.cluster for p in kept)
    assert sum(c.size_before for c in got.clusters) == stages["balance"].rows_in
    assert sum(c.size_after for c in got.clusters) == len(kept) == stages["balance"].rows_out


def test_worker_processes_give_what_one_process_gives(logged: Path) -> None:
    settings = CurationSettings(cluster_cap_share=0.3, cluster_cap_min_rows=10, eval_min_rows=5)
    one = run_plan(logged, Scope("r"), settings, PriorEval(), Resources(batch_rows=13))
    two = run_plan(logged, Scope("r"), settings, PriorEval(), Resources(batch_rows=13, workers=2))
    assert _summary(two) == _summary(one)
