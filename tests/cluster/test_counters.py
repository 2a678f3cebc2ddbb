"""Summing traffic rows across replicas."""

from __future__ import annotations

import pytest

from cluster.counters import sum_counters


def test_numbers_add_lists_add_element_wise_dicts_recurse() -> None:
    rows = [
        {"requests": 3, "latency_s": 0.5, "buckets": [1, 0, 2],
         "by": {"student": {"ok": 2}, "teacher": {"ok": 1, "buckets": [1, 1]}}},
        {"requests": 4, "latency_s": 0.25, "buckets": [0, 5, 1],
         "by": {"teacher": {"ok": 3, "buckets": [0, 2]}}, "shadow": 7},
    ]  # fmt: skip
    assert sum_counters(rows) == {
        "requests": 7, "latency_s": 0.75, "buckets": [1, 5, 3],
        "by": {"student": {"ok": 2}, "teacher": {"ok": 4, "buckets": [1, 3]}}, "shadow": 7,
    }  # fmt: skip
    assert rows[0]["buckets"] == [1, 0, 2]  # the rows are not changed
    assert rows[0]["by"] == {"student": {"ok": 2}, "teacher": {"ok": 1, "buckets": [1, 1]}}
    assert sum_counters([]) == {}


def test_unlike_values_are_refused() -> None:
    with pytest.raises(ValueError, match=r"buckets: cannot add lists of 2 and 3"):
        sum_counters([{"buckets": [1, 2]}, {"buckets": [1, 2, 3]}])
    with pytest.raises(TypeError, match=r"by\.x"):
        sum_counters([{"by": {"x": 1}}, {"by": {"x": [1]}}])
    with pytest.raises(TypeError, match="number"):
        sum_counters([{"state": "canary"}])
    with pytest.raises(TypeError):
        sum_counters([{"ok": True}, {"ok": True}])
