"""Connected components of an edge list, vectorised: dedupe groups and split units use it."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]


def connected_components(n: int, u: IntArray, v: IntArray) -> IntArray:
    """Label each of `n` nodes with the smallest node index of its component.

    Hook-and-compress: every edge hooks the root of its larger label under the smaller one,
    then pointer jumping flattens the trees; repeat until no edge joins two labels. Each round
    is a few numpy passes, and the rounds needed grow with log n, not with n.
    """
    labels: IntArray = np.arange(n, dtype=np.int64)
    if len(u) == 0:
        return labels
    while True:
        before = labels.copy()
        lu, lv = labels[u], labels[v]
        low = np.minimum(lu, lv)
        np.minimum.at(labels, lu, low)
        np.minimum.at(labels, lv, low)
        while True:
            jumped = labels[labels]
            if np.array_equal(jumped, labels):
                break
            labels = jumped
        if np.array_equal(labels, before):
            return labels
