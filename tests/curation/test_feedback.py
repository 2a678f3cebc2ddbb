from __future__ import annotations

import json
from pathlib import Path

from curation.feedback import Verdict, apply_feedback, load_feedback
from curation.settings import CurationSettings
from logbook.segments import open_segments
from tests.curation.logged_rows import feedback_row, make_pair, request_row, write_segment


def test_negative_feedback_drops_the_row() -> None:
    bad, good = make_pair("a"), make_pair("b")
    kept, report = apply_feedback(
        [bad, good], {bad.request_id: Verdict(-1.0, None)}, CurationSettings()
    )
    assert kept == [good]
    assert report.dropped == {"negative_feedback": 1}


def test_a_correction_replaces_the_answer() -> None:
    pair = make_pair("a", "wrong")
    correction = json.dumps({"role": "assistant", "content": "right"})
    kept, report = apply_feedback(
        [pair], {pair.request_id: Verdict(-1.0, correction)}, CurationSettings()
    )
    assert kept[0].answer == {"role": "assistant", "content": "right"}
    assert kept[0].corrected and report.changed["corrected"] == 1


def test_a_plain_text_correction_becomes_the_content() -> None:
    pair = make_pair("a", "wrong")
    kept, _ = apply_feedback(
        [pair], {pair.request_id: Verdict(0.0, "just text")}, CurationSettings()
    )
    assert kept[0].answer == {"role": "assistant", "content": "just text"}


def test_positive_feedback_raises_the_weight() -> None:
    pair = make_pair("a")
    kept, _ = apply_feedback(
        [pair], {pair.request_id: Verdict(1.0, None)}, CurationSettings(positive_weight=2.0)
    )
    assert kept[0].weight == 3.0 and kept[0].feedback_score == 1.0


def test_the_latest_feedback_of_a_request_counts(tmp_path: Path) -> None:
    write_segment(tmp_path, [request_row("q", request_id="x")])
    write_segment(
        tmp_path,
        [feedback_row("x", -1.0, minute=1), feedback_row("x", 0.5, minute=2)],
        table="feedback",
    )
    verdicts = load_feedback(open_segments(tmp_path, "r"), "r")
    assert verdicts == {"x": Verdict(0.5, None)}
