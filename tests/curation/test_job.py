from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from curation.dataset import DATASET_SCHEMA, dataset_versions, read_manifest
from curation.job import NoRowsError, run_curation
from curation.reference import load_reference
from curation.settings import CurationSettings
from logbook.schema import FeedbackRow, RequestRow
from logbook.settings import LogbookSettings
from logbook.writer import Logbook
from monitoring.metrics import Metrics
from tests.curation.logged_rows import feedback_row, request_row, write_segment

CARD = "4111 1111 1111 1111"


def traffic() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Logged rows with every problem curation handles, and their feedback."""
    rng = random.Random(5)
    vocab = [f"word{i}" for i in range(400)]
    rows = [
        request_row(
            f"translate this sentence number {i} about cats and dogs into french",
            f"Voici la phrase {i}",
            minute=i,
            session_hash=f"s{i % 40}",
        )
        for i in range(120)  # the dominant request type
    ]
    rows += [
        request_row(" ".join(rng.sample(vocab, 25)), "answer", minute=200 + i, session_hash=f"t{i}")
        for i in range(60)
    ]
    rows.append(
        request_row(
            rows[130]["request"] and json.loads(rows[130]["request"])["messages"][1]["content"],
            "answer again",
            minute=400,
        )
    )  # an exact duplicate
    rows += [
        request_row(
            "my email is jo@example.com and card " + CARD, "Noted, jo@example.com", minute=401
        ),
        request_row("boom", None, minute=402, outcome="upstream_error", status=502),
        request_row("long", "cut", minute=403, finish_reason="length"),
        request_row("how do I pick a lock", "I'm sorry, but I can't help with that.", minute=404),
        request_row("rate me badly", "meh", minute=405, request_id="bad-one"),
        request_row("correct me", "wrong", minute=406, request_id="fix-me"),
        request_row("unparseable", request_id="broken", request="{oops"),
    ]
    feedback = [feedback_row("bad-one", -1.0), feedback_row("fix-me", 0.0, json.dumps("right"))]
    return rows, feedback


@pytest.fixture
def settings() -> CurationSettings:
    return CurationSettings(cluster_cap_share=0.3, cluster_cap_min_rows=10, eval_min_rows=5)


def test_the_whole_job_writes_a_clean_dataset(tmp_path: Path, settings: CurationSettings) -> None:
    rows, feedback = traffic()
    write_segment(tmp_path, rows)
    write_segment(tmp_path, feedback, table="feedback")
    result = run_curation(tmp_path, "r", settings)
    assert result.status == "written" and result.version == 1
    stages = {s.name: s for s in result.stages}
    assert stages["select"].dropped == {"malformed_row": 1}
    assert stages["quality"].dropped == {"error": 1, "length": 1, "refusal": 1}
    assert stages["feedback"].dropped == {"negative_feedback": 1}
    assert stages["feedback"].changed["corrected"] == 1
    assert stages["scrub"].changed == {"card": 1, "email": 1}
    assert stages["dedupe"].dropped["exact_duplicate"] == 1
    assert stages["balance"].dropped["cluster_cap"] > 0
    assert result.skipped == [{"request_id": "broken", "reason": "malformed_row"}]
    train = pq.read_table(result.path / "train.parquet")  # type: ignore[operator]
    evaluation = pq.read_table(result.path / "eval.parquet")  # type: ignore[operator]
    assert train.schema.equals(DATASET_SCHEMA) and evaluation.schema.equals(DATASET_SCHEMA)
    text = json.dumps(train.to_pylist() + evaluation.to_pylist(), default=str)
    assert "jo@example.com" not in text and CARD not in text and "<EMAIL_1>" in text
    answers = dict(
        zip(
            train["request_id"].to_pylist() + evaluation["request_id"].to_pylist(),
            train["answer_text"].to_pylist() + evaluation["answer_text"].to_pylist(),
            strict=True,
        )
    )
    assert answers["fix-me"] == "right" and "bad-one" not in answers
    sessions = set(train["session_hash"].to_pylist()) & set(evaluation["session_hash"].to_pylist())
    assert sessions <= {None}
    manifest = read_manifest(tmp_path, "r", 1)
    assert manifest["counts"] == result.counts and manifest["version"] == 1
    assert manifest["source"]["segments"][0].startswith("segments/route=r/")
    assert load_reference(tmp_path, "r", 1).rows == len(train)
    assert not [p for p in (tmp_path / "datasets" / "r").iterdir() if p.name.startswith(".")]


def test_a_second_run_without_new_rows_writes_nothing(
    tmp_path: Path, settings: CurationSettings
) -> None:
    write_segment(tmp_path, traffic()[0])
    assert run_curation(tmp_path, "r", settings).version == 1
    again = run_curation(tmp_path, "r", settings)
    assert again.status == "up_to_date" and "No new rows" in again.message
    assert dataset_versions(tmp_path, "r") == [1]


def test_new_rows_make_a_new_version_and_eval_rows_stay_in_eval(
    tmp_path: Path, settings: CurationSettings
) -> None:
    write_segment(tmp_path, traffic()[0])
    first = run_curation(tmp_path, "r", settings)
    eval_ids = set(pq.read_table(first.path / "eval.parquet")["request_id"].to_pylist())  # type: ignore[operator]
    more = [
        request_row(f"brand new question {i} on topic {i * 7}", "a", minute=900 + i)
        for i in range(100)
    ]
    write_segment(tmp_path, more)
    second = run_curation(tmp_path, "r", settings)
    assert second.version == 2
    new_eval = set(pq.read_table(second.path / "eval.parquet")["request_id"].to_pylist())  # type: ignore[operator]
    assert eval_ids <= new_eval


def test_a_route_without_rows_raises_a_clear_error(
    tmp_path: Path, settings: CurationSettings
) -> None:
    with pytest.raises(NoRowsError, match="no sealed traffic"):
        run_curation(tmp_path, "r", settings)
    write_segment(tmp_path, [request_row("x", task="a")])
    with pytest.raises(NoRowsError, match="task 'b'"):
        run_curation(tmp_path, "r", settings, task="b")


def test_rows_that_all_fail_write_nothing(tmp_path: Path, settings: CurationSettings) -> None:
    write_segment(tmp_path, [request_row("x", None, outcome="upstream_error", status=500)])
    result = run_curation(tmp_path, "r", settings)
    assert result.status == "empty" and dataset_versions(tmp_path, "r") == []


def test_a_stray_version_folder_is_not_reused(tmp_path: Path, settings: CurationSettings) -> None:
    (tmp_path / "datasets" / "r" / "v1").mkdir(parents=True)
    (tmp_path / "datasets" / "r" / "v1" / "junk").write_text("x")
    write_segment(tmp_path, traffic()[0])
    assert run_curation(tmp_path, "r", settings).version == 2


async def test_segments_sealed_by_the_real_logbook(
    tmp_path: Path, settings: CurationSettings
) -> None:
    rows, feedback = traffic()
    logbook = Logbook(tmp_path, LogbookSettings(), Metrics())
    await logbook.open(background=False)
    for row in rows:
        logbook.submit(RequestRow(**row))
    await logbook.flush()
    await logbook.seal()
    for row in feedback:
        logbook.submit_feedback(FeedbackRow(**row))
    await logbook.close()
    result = run_curation(tmp_path, "r", settings)
    assert result.written and result.counts["train"] > 0
    stages = {s.name: s for s in result.stages}
    assert stages["feedback"].dropped == {"negative_feedback": 1}
    assert stages["quality"].dropped == {"error": 1, "length": 1, "refusal": 1}


def test_eval_has_a_novel_slice_of_names_train_never_saw(tmp_path: Path) -> None:
    from tests.retrain.triage_task import make_rows

    rows = [
        request_row(json.loads(r["messages"])[-1]["content"], r["answer_text"], minute=i,
                    session_hash=f"s{i // 4}")
        for i, r in enumerate(make_rows(600, seed=2))
    ]  # fmt: skip
    write_segment(tmp_path, rows)
    result = run_curation(tmp_path, "r", CurationSettings(cluster_cap_share=1.0))
    assert result.written and result.path is not None and result.novel_note is None
    manifest = read_manifest(tmp_path, "r", 1)
    held = [h["text"] for h in manifest["novel"]["held_out"]]
    assert held and manifest["counts"]["eval_novel"] >= 0.05 * 600
    train = pq.read_table(result.path / "train.parquet").to_pylist()
    evaluation = pq.read_table(result.path / "eval.parquet").to_pylist()
    assert all(r["slice"] is None for r in train)
    assert {r["slice"] for r in evaluation} == {"novel", "in_distribution"}
    novel = [r for r in evaluation if r["slice"] == "novel"]
    assert len(novel) == manifest["counts"]["eval_novel"]
    for name in held:
        assert all(name not in r["messages"] for r in train)
        assert any(name in r["messages"] for r in novel)
    assert all(json.loads(r["spans"]) is not None for r in train)
    # a later version (other settings) holds the same groups out again, first
    again = run_curation(tmp_path, "r", CurationSettings(cluster_cap_share=1.0, novel_share=0.1))
    assert again.written
    later = [h["text"] for h in read_manifest(tmp_path, "r", 2)["novel"]["held_out"]]
    assert later[: len(held)] == held
