from __future__ import annotations

from curation.pairs import Pair
from curation.settings import CurationSettings
from curation.split import PriorEval, split_pairs
from tests.curation.logged_rows import make_pair


def rows(n_sessions: int = 40, per_session: int = 5) -> list[Pair]:
    return [
        make_pair(f"q {s} {i}", session_hash=f"s{s}", group_id=f"g{s}-{i}")
        for s in range(n_sessions)
        for i in range(per_session)
    ]


def test_no_session_appears_on_both_sides() -> None:
    train, evaluation, _ = split_pairs(rows(), CurationSettings(eval_share=0.2))
    assert {p.session_hash for p in train}.isdisjoint({p.session_hash for p in evaluation})
    assert len(evaluation) >= 0.2 * 200


def test_no_near_duplicate_group_appears_on_both_sides() -> None:
    pairs = [make_pair(f"q{i}", group_id=f"g{i % 30}") for i in range(120)]
    train, evaluation, _ = split_pairs(pairs, CurationSettings())
    assert {p.group_id for p in train}.isdisjoint({p.group_id for p in evaluation})


def test_a_group_shared_by_two_sessions_joins_them() -> None:
    pairs = rows(20, 2)
    pairs.append(make_pair("bridge", session_hash="s0", group_id="g1-0"))
    train, _, _ = split_pairs(pairs, CurationSettings(eval_share=0.3))
    sides = {p.session_hash: ("train" if p in train else "eval") for p in pairs}
    assert sides["s0"] == sides["s1"]


def test_eval_holds_the_minimum_count_but_never_more_than_half() -> None:
    train, evaluation, _ = split_pairs(
        rows(100, 1), CurationSettings(eval_share=0.01, eval_min_rows=25)
    )
    assert len(evaluation) == 25
    train, evaluation, _ = split_pairs(rows(10, 1), CurationSettings(eval_min_rows=25))
    assert len(evaluation) == 5 and len(train) == 5


def test_the_split_is_deterministic() -> None:
    pairs = rows()
    first = [p.request_id for p in split_pairs(pairs, CurationSettings())[1]]
    again = [p.request_id for p in split_pairs(list(reversed(pairs)), CurationSettings())[1]]
    assert sorted(first) == sorted(again)


def test_rows_in_an_earlier_eval_stay_in_eval() -> None:
    pairs = rows()
    train, evaluation, _ = split_pairs(pairs, CurationSettings())
    moved = train[:3]
    prior = PriorEval(request_ids=frozenset(p.request_id for p in moved))
    _, evaluation, report = split_pairs(pairs, CurationSettings(), prior)
    assert {p.request_id for p in moved} <= {p.request_id for p in evaluation}
    assert report.changed["kept_in_eval"] >= 3


def test_a_prior_eval_id_folded_into_a_group_keeps_the_group_in_eval() -> None:
    pairs = rows()
    survivor = pairs[0]
    survivor.group_members = [survivor.request_id, "old-eval-row"]
    _, evaluation, _ = split_pairs(
        pairs, CurationSettings(), PriorEval(request_ids=frozenset({"old-eval-row"}))
    )
    assert survivor in evaluation
