"""Traffic counters that add up across replicas: what each replica publishes, and the interval
the leader judges from their sum.

A replica's counts since its last publish are one JSON-able dict: integer counts named as in
`IntervalStats`, and each side's latencies as a sparse histogram (bucket index -> count, the
buckets 20% wide from 0.1 ms). Counts and histograms add, so the sum over replicas is exactly
what one process serving all the traffic would have counted; a p95 is read off the summed
histogram, within a bucket's width (interpolated geometrically inside it).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import fields
from typing import Any

from canary.controller import IntervalStats

LOWEST_S = 1e-4  # latencies below it share bucket 0
GROWTH = 1.2  # each bucket 20% wider than the one before
LATENCIES = {"student_latency": "student_p95_s", "teacher_latency": "teacher_p95_s"}
COUNTS = tuple(
    f.name
    for f in fields(IntervalStats)
    if f.type in ("int", int)  # the integer counts; p95s and drift are not summed
)


def bucket(latency_s: float) -> str:
    """The histogram key of one latency."""
    if latency_s <= LOWEST_S:
        return "0"
    return str(int(math.log(latency_s / LOWEST_S) / math.log(GROWTH)) + 1)


def add(total: dict[str, Any], counters: Mapping[str, Any]) -> dict[str, Any]:
    """`total` with `counters` added in (counts, and histograms bucket by bucket)."""
    for key, value in counters.items():
        if isinstance(value, Mapping):
            histogram = total.setdefault(key, {})
            for b, n in value.items():
                histogram[b] = histogram.get(b, 0) + n
        elif isinstance(value, int | float):
            total[key] = total.get(key, 0) + value
    return total


def summed(rows: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    total: dict[str, Any] = {}
    for counters in rows:
        add(total, counters)
    return total


def interval_stats(counters: Mapping[str, Any]) -> IntervalStats:
    """The IntervalStats of summed counters (drift scores are the caller's to add)."""
    values: dict[str, Any] = {name: int(counters.get(name, 0)) for name in COUNTS}
    values |= {field: p95(counters.get(key) or {}) for key, field in LATENCIES.items()}
    return IntervalStats(**values)


def p95(histogram: Mapping[str, int]) -> float | None:
    """The 95th percentile of a histogram, None when it is empty."""
    total = sum(histogram.values())
    if total == 0:
        return None
    rank, seen = 0.95 * total, 0
    for b in sorted(histogram, key=int):
        n = histogram[b]
        if seen + n >= rank:
            index = int(b)
            low = 0.0 if index == 0 else LOWEST_S * GROWTH ** (index - 1)
            high = LOWEST_S * GROWTH**index
            if index == 0:
                return high
            return float(low * (high / low) ** ((rank - seen) / n))  # geometric in the bucket
        seen += n
    return float(LOWEST_S * GROWTH ** int(max(histogram, key=int)))
