from __future__ import annotations

import random
from datetime import timedelta

from curation.dedupe import dedupe_pairs, near_duplicate_groups
from curation.settings import CurationSettings
from tests.curation.logged_rows import T0, make_pair

random.seed(7)
WORDS = [f"w{i}" for i in range(5000)]


def sentence(n: int = 60) -> list[str]:
    return random.sample(WORDS, n)


def jaccard_of_shingles(a: list[str], b: list[str], k: int = 3) -> float:
    sa = {tuple(a[i : i + k]) for i in range(len(a) - k + 1)}
    sb = {tuple(b[i : i + k]) for i in range(len(b) - k + 1)}
    return len(sa & sb) / len(sa | sb)


def test_near_duplicates_above_the_threshold_group_and_below_it_do_not() -> None:
    base = sentence(100)
    close = [*base[:99], "changed"]  # one word: shingle Jaccard ~0.97
    far = [*base[:60], *sentence(40)]  # 40 of 100 words new: Jaccard ~0.4
    assert jaccard_of_shingles(base, close) > 0.95 and jaccard_of_shingles(base, far) < 0.6
    labels = near_duplicate_groups(
        [" ".join(base), " ".join(close), " ".join(far)], ["s"] * 3, CurationSettings()
    )
    assert labels[0] == labels[1]
    assert labels[2] != labels[0]


def test_the_threshold_decides_between_close_and_far() -> None:
    base = sentence(100)
    mid = [*base[:88], *sentence(12)]  # shingle Jaccard ~0.77
    texts, salts = [" ".join(base), " ".join(mid)], ["s", "s"]
    strict = near_duplicate_groups(texts, salts, CurationSettings(dedupe_threshold=0.85))
    loose = near_duplicate_groups(texts, salts, CurationSettings(dedupe_threshold=0.6))
    assert strict[0] != strict[1]
    assert loose[0] == loose[1]


def test_prompts_of_other_tasks_are_never_grouped() -> None:
    text = " ".join(sentence())
    labels = near_duplicate_groups([text, text], ["a", "b"], CurationSettings())
    assert labels[0] != labels[1]


def test_exact_duplicates_ignore_case_and_whitespace_and_the_newest_wins() -> None:
    old = make_pair("Reset my   password", started_at=T0)
    new = make_pair("reset my password", started_at=T0 + timedelta(hours=1))
    other = make_pair("an entirely different question about invoices")
    kept, report = dedupe_pairs([old, new, other], CurationSettings())
    assert {p.request_id for p in kept} == {new.request_id, other.request_id}
    assert report.dropped == {"exact_duplicate": 1}
    assert set(new.group_members) == {old.request_id, new.request_id}


def test_rated_members_beat_newer_ones_and_group_ids_follow_the_oldest() -> None:
    words = sentence(80)
    rated = make_pair(" ".join(words), started_at=T0, feedback_score=1.0)
    newer = make_pair(" ".join([*words[:79], "x"]), started_at=T0 + timedelta(hours=1))
    kept, report = dedupe_pairs([rated, newer], CurationSettings())
    assert [p.request_id for p in kept] == [rated.request_id]
    assert report.dropped == {"near_duplicate": 1}
    again, _ = dedupe_pairs(
        [
            make_pair(" ".join(words), request_id=rated.request_id, started_at=T0),
            make_pair(" ".join(words[:70]) + " y", started_at=T0 + timedelta(days=1)),
        ],
        CurationSettings(),
    )
    assert again[0].group_id == kept[0].group_id


def test_many_distinct_prompts_stay_apart() -> None:
    pairs = [make_pair(" ".join(sentence(30))) for _ in range(300)]
    kept, report = dedupe_pairs(pairs, CurationSettings())
    assert len(kept) == 300 and report.dropped == {}
