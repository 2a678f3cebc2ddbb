from __future__ import annotations

import numpy as np

from curation.graph import connected_components
from curation.minhash import lsh_params, signatures


def test_signatures_are_deterministic_and_estimate_jaccard() -> None:
    a = [" ".join(f"w{i}" for i in range(200))]
    b = [" ".join(f"w{i}" for i in range(100, 300))]  # word-set Jaccard 1/3
    sa, sb = signatures(a + b, 1, 256, seed=1), signatures(a + b, 1, 256, seed=1)
    assert np.array_equal(sa, sb)
    estimate = float((sa[0] == sa[1]).mean())
    assert abs(estimate - 1 / 3) < 0.1


def test_short_and_empty_docs_get_signatures() -> None:
    sig = signatures(["hi", "", "Hi!"], 3, 16, seed=1)
    assert sig.shape == (3, 16)
    assert np.array_equal(sig[0], sig[2]) and not np.array_equal(sig[0], sig[1])


def test_lsh_params_fit_the_permutations() -> None:
    bands, rows = lsh_params(0.85, 128)
    assert bands * rows <= 128
    assert 1 - (1 - 0.85**rows) ** bands >= 0.99  # pairs at the threshold are found
    assert 1 - (1 - 0.4**rows) ** bands < 0.01  # dissimilar ones rarely become candidates


def test_connected_components_label_by_smallest_member() -> None:
    u = np.array([4, 1, 3], dtype=np.int64)
    v = np.array([3, 2, 0], dtype=np.int64)
    assert connected_components(6, u, v).tolist() == [0, 1, 1, 0, 0, 5]
