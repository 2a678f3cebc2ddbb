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
    assert list(verdicts) == ["x"]
    assert (verdicts["x"].score, verdicts["x"].correction) == (0.5, None)
    assert verdicts["x"].created_at is not None  # dated, so copies can take the latest


def test_negative_feedback_drops_every_logged_copy_of_the_pair() -> None:
    bad, copy, other_answer = make_pair("a", "wrong"), make_pair("a", "wrong"), make_pair("a", "ok")
    unrelated = make_pair("b", "wrong")
    pairs = [bad, copy, other_answer, unrelated]
    kept, report = apply_feedback(pairs, {bad.request_id: Verdict(-1.0, None)}, CurationSettings())
    assert kept == [other_answer, unrelated]
    assert report.dropped == {"negative_feedback": 1, "negative_feedback_copy": 1}


def test_a_copy_takes_the_latest_verdict_on_its_pair_and_its_own_verdict_wins() -> None:
    from datetime import datetime

    first, second, rated, plain = (make_pair("a", "wrong") for _ in range(4))
    verdicts = {
        first.request_id: Verdict(-1.0, None, datetime(2026, 1, 1)),
        second.request_id: Verdict(1.0, None, datetime(2026, 1, 2)),  # a change of mind
        rated.request_id: Verdict(-1.0, None, datetime(2026, 1, 3)),
    }
    kept, _ = apply_feedback([first, second, rated, plain], verdicts, CurationSettings())
    # the pair's latest verdict is the negative one on `rated`: the unrated copy goes with it,
    # while `second` keeps its own positive verdict
    assert kept == [second]
    correction = Verdict(-1.0, json.dumps({"role": "assistant", "content": "right"}))
    fixed, copy = make_pair("c", "wrong"), make_pair("c", "wrong")
    kept, _ = apply_feedback([fixed, copy], {fixed.request_id: correction}, CurationSettings())
    assert [p.answer for p in kept] == [{"role": "assistant", "content": "right"}] * 2
