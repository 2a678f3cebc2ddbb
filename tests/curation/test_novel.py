from __future__ import annotations

from curation.novel import hold_out_novel
from curation.pairs import Pair
from curation.settings import CurationSettings
from curation.split import split_pairs
from tests.curation.logged_rows import make_pair

PEOPLE = ["Ana", "Bo", "Chen", "Dara", "Eli", "Femi", "Gus", "Hana", "Ines", "Kofi"]


def pairs(n: int = 400) -> list[Pair]:
    out = []
    for i in range(n):
        name = PEOPLE[i % len(PEOPLE)]
        text = f"please reset the password of {name}" if i % 2 else f"where is my order {i}"
        out.append(make_pair(text, session_hash=f"s{i // 4}", group_id=f"g{i}"))
    return out


def test_whole_span_groups_leave_train_and_form_the_novel_slice() -> None:
    rows = pairs()
    settings = CurationSettings(novel_share=0.05)
    novel, report = hold_out_novel(rows, settings)
    assert novel.held_out and novel.note is None
    held = {h.text for h in novel.held_out}
    train, evaluation, _ = split_pairs(rows, settings, novel=novel.request_ids)
    train_text = " ".join(p.messages[-1]["content"] for p in train)
    assert all(name not in train_text for name in held)  # no train row names them
    assert novel.request_ids <= {p.request_id for p in evaluation}
    assert len(novel.request_ids) >= 0.05 * len(rows)
    assert len(novel.request_ids) <= settings.novel_max_share * len(rows)
    # the in-distribution slice still gets its share on top of the novel one
    assert len(evaluation) - len(novel.request_ids) >= 0.1 * (len(rows) - len(novel.request_ids))
    assert report.changed["novel"] == len(novel.request_ids)


def test_the_same_groups_are_held_out_again_and_prior_ones_stay_out() -> None:
    rows = pairs()
    first, _ = hold_out_novel(rows, CurationSettings())
    again, _ = hold_out_novel(list(reversed(rows)), CurationSettings())
    assert [h.key for h in first.held_out] == [h.key for h in again.held_out]
    named = {s.key for spans in first.spans.values() for s in spans}
    other = sorted(named - {h.key for h in first.held_out})[0]
    kept, _ = hold_out_novel(rows, CurationSettings(), prior_keys=frozenset({other}))
    assert other in {h.key for h in kept.held_out}


def test_too_few_rare_spans_means_no_novel_slice_and_says_why() -> None:
    rows = [make_pair(f"where is my order {i}", group_id=f"g{i}") for i in range(100)]
    novel, _ = hold_out_novel(rows, CurationSettings())
    assert novel.request_ids == set() and novel.held_out == []
    assert novel.note is not None and novel.note.startswith("too few rare spans")
    off, _ = hold_out_novel(pairs(), CurationSettings(novel_share=0))
    assert off.request_ids == set() and off.note == "no novel slice: novel_share is 0"


def test_an_earlier_group_that_grew_too_big_is_let_go() -> None:
    rows = pairs()
    common = "name:bo"  # every tenth row names Bo: 10% of rows
    kept, _ = hold_out_novel(rows, CurationSettings(novel_max_share=0.15), frozenset({common}))
    assert common in {h.key for h in kept.held_out}
    small = CurationSettings(novel_share=0.02, novel_max_share=0.05)
    let_go, _ = hold_out_novel(rows, small, frozenset({common}))
    assert common not in {h.key for h in let_go.held_out}
    assert len(let_go.request_ids) <= 0.05 * len(rows)
