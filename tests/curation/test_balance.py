from __future__ import annotations

import random

from curation.balance import balance_pairs, cluster_cap, cluster_prompts
from curation.pairs import Pair
from curation.settings import CurationSettings
from tests.curation.logged_rows import make_pair

random.seed(3)
TOPICS = [[f"t{t}w{i}" for i in range(30)] for t in range(12)]


def prompt(topic: int) -> str:
    return " ".join(random.sample(TOPICS[topic], 20))


def dominated(n_big: int = 90, n_rare: int = 10) -> list[Pair]:
    return [make_pair(prompt(0)) for _ in range(n_big)] + [
        make_pair(prompt(1 + i % 10)) for i in range(n_rare)
    ]


def test_prompts_of_one_kind_form_one_cluster() -> None:
    texts = [prompt(0) for _ in range(50)] + [prompt(1) for _ in range(5)]
    labels, centres = cluster_prompts(texts, 0.5, 32)
    assert len(set(labels[:50].tolist())) == 1
    assert set(labels[50:].tolist()).isdisjoint(set(labels[:50].tolist()))
    assert len(centres) == 2


def test_a_cluster_holding_90_percent_of_rows_is_capped() -> None:
    settings = CurationSettings(cluster_cap_share=0.25, cluster_cap_min_rows=0)
    kept, report, table = balance_pairs(dominated(), settings)
    biggest = table[0]
    assert biggest.size_before == 90
    assert biggest.size_after <= 0.25 * len(kept)
    assert sum(row.size_after for row in table) == len(kept)
    assert report.dropped == {"cluster_cap": 90 - biggest.size_after}
    assert all(row.size_after == row.size_before for row in table[1:])  # the rare are kept


def test_the_cap_never_goes_below_the_minimum_rows() -> None:
    settings = CurationSettings(cluster_cap_share=0.25, cluster_cap_min_rows=30)
    _, _, table = balance_pairs(dominated(), settings)
    assert table[0].size_after == 30


def test_cluster_cap_fixed_point() -> None:
    assert cluster_cap([90] + [1] * 10, 0.25, 0) == 3  # 3 <= 0.25 * (3 + 10)
    assert cluster_cap([50, 50], 0.25, 0) == 50  # two clusters cannot each be under 1/2
    assert cluster_cap([100], 0.1, 0) == 100


def test_rows_that_were_in_eval_survive_the_cap() -> None:
    pairs = dominated()
    protected = frozenset(p.request_id for p in pairs[:5])
    settings = CurationSettings(cluster_cap_share=0.25, cluster_cap_min_rows=0)
    kept, _, _ = balance_pairs(pairs, settings, protected)
    assert protected <= {p.request_id for p in kept}


def test_oversampling_raises_the_weight_of_rare_clusters() -> None:
    settings = CurationSettings(
        cluster_cap_min_rows=1000, oversample=True, rare_share=0.05, max_oversample=4
    )
    kept, report, table = balance_pairs(dominated(), settings)
    rare = [p for p in kept if p.cluster != table[0].id]
    assert all(p.weight == 4.0 for p in rare)  # share 1% -> factor 5, clipped at 4
    assert all(p.weight == 1.0 for p in kept if p.cluster == table[0].id)
    assert report.changed == {"oversampled": 10}


def test_clusters_are_per_task() -> None:
    pairs = [make_pair(prompt(0), task="a") for _ in range(5)]
    pairs += [make_pair(prompt(0), task="b") for _ in range(5)]
    _, _, table = balance_pairs(pairs, CurationSettings())
    assert sorted(row.id for row in table) == ["a/c0", "b/c0"]
