from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from curation.select import Selection, read_rows, select_pairs
from curation.settings import CurationSettings
from logbook.segments import open_segments
from tests.curation.logged_rows import T0, request_row, write_segment


def _select(
    data_dir: Path, settings: CurationSettings | None = None, **filters: object
) -> Selection:
    con = open_segments(data_dir, "r")
    rows_read, table = read_rows(con, "r", filters.get("task"), filters.get("since"))  # type: ignore[arg-type]
    return select_pairs(rows_read, table, settings or CurationSettings())


def test_a_request_sealed_twice_counts_once_and_the_latest_row_wins(tmp_path: Path) -> None:
    write_segment(tmp_path, [request_row("hi", "old answer", request_id="a")], first_seq=1)
    write_segment(tmp_path, [request_row("hi", "new answer", request_id="a")], first_seq=5)
    selection = _select(tmp_path)
    assert [p.answer["content"] for p in selection.pairs if p.answer] == ["new answer"]
    assert selection.report.dropped == {"repeated_id": 1}
    assert (selection.report.rows_in, selection.report.rows_out) == (2, 1)


def test_unreadable_rows_are_skipped_with_their_id(tmp_path: Path) -> None:
    rows = [
        request_row("fine", request_id="good"),
        request_row("x", request_id="future", schema_version=99),
        request_row("x", request_id="broken", request="{not json"),
        request_row("x", request_id="nomsg", request=json.dumps({"model": "r"})),
    ]
    write_segment(tmp_path, rows)
    selection = _select(tmp_path)
    assert [p.request_id for p in selection.pairs] == ["good"]
    assert {s["request_id"]: s["reason"] for s in selection.skipped} == {
        "future": "unknown_schema",
        "broken": "malformed_row",
        "nomsg": "malformed_row",
    }


def test_student_answers_are_not_labels(tmp_path: Path) -> None:
    write_segment(tmp_path, [request_row("a"), request_row("b", served_by="student:v3")])
    selection = _select(tmp_path)
    assert len(selection.pairs) == 1
    assert selection.report.dropped == {"not_teacher": 1}
    assert selection.skipped == []


def test_a_changed_system_prompt_starts_a_new_partition_per_task(tmp_path: Path) -> None:
    rows = [
        request_row("old", system="v1 prompt", minute=0, task="a"),
        request_row("new", system="v2 prompt", minute=5, task="a"),
        request_row("other task keeps its own", system="v1 prompt", minute=1, task="b"),
        request_row("newer teacher", system="v2 prompt", minute=6, task="a", teacher="openai/x"),
    ]
    write_segment(tmp_path, rows)
    kept = {p.messages[-1]["content"] for p in _select(tmp_path).pairs}
    assert kept == {"newer teacher", "other task keeps its own"}
    everything = _select(tmp_path, CurationSettings(one_teacher_per_task=False))
    assert len(everything.pairs) == 4


def test_task_and_since_filter_rows(tmp_path: Path) -> None:
    write_segment(
        tmp_path, [request_row("a", task="x", minute=0), request_row("b", task="y", minute=10)]
    )
    assert [p.task for p in _select(tmp_path, task="y").pairs] == ["y"]
    late = _select(tmp_path, since=T0 + timedelta(minutes=5))
    assert [p.task for p in late.pairs] == ["y"]
