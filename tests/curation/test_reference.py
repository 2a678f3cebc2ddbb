from __future__ import annotations

import json
from pathlib import Path

from curation.dataset import dataset_dir
from curation.reference import Histogram, Reference, load_reference, reference_stats
from curation.settings import CurationSettings
from tests.curation.logged_rows import make_pair


def test_length_histogram_has_quantile_edges_and_open_ends() -> None:
    histogram = Histogram.of(list(range(1, 101)), bins=4)
    assert histogram.edges == [1.0, 25.75, 50.5, 75.25, 100.0]
    assert histogram.counts == [25, 25, 25, 25]
    assert histogram.bin_counts([0, 30, 1000]) == [1, 1, 0, 1]


def test_constant_lengths_make_one_bin() -> None:
    histogram = Histogram.of([5, 5, 5], bins=10)
    assert histogram.counts == [3] and histogram.bin_counts([1, 99]) == [2]


def test_reference_profiles_prompts_not_system_messages() -> None:
    pairs = [
        make_pair("refund my order", "ok", cluster="c0"),
        make_pair("refund", "ok", cluster="c1"),
    ]
    pairs[0].messages.insert(0, {"role": "system", "content": "never counted"})
    ref = reference_stats(pairs, CurationSettings(length_bins=2, top_tokens=10))
    assert ref.top_tokens == {"refund": 0.5, "my": 0.25, "order": 0.25}
    assert ref.total_tokens == 4 and ref.vocabulary == 3 and ref.other_share == 0.0
    assert ref.cluster_shares == {"c0": 0.5, "c1": 0.5}
    assert sum(ref.prompt_length.counts) == 2


def test_tokens_past_the_top_count_as_other() -> None:
    pairs = [make_pair("a a a b c d e f g h i j k l")]  # 14 tokens, 12 distinct
    ref = reference_stats(pairs, CurationSettings(top_tokens=10))
    assert len(ref.top_tokens) == 10 and ref.top_tokens["a"] == round(3 / 14, 8)
    assert ref.other_share == round(2 / 14, 8)


def test_load_reference_round_trips_through_the_manifest(tmp_path: Path) -> None:
    ref = reference_stats([make_pair("x y z", cluster="c0")], CurationSettings())
    folder = dataset_dir(tmp_path, "r", 1)
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(json.dumps({"reference": ref.to_json()}))
    loaded = load_reference(tmp_path, "r", 1)
    assert loaded == ref
    assert isinstance(loaded, Reference)
