"""Summing the traffic rows replicas publish: a pure function the leader calls."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


def sum_counters(rows: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Add counter dicts key by key: numbers are added, lists (histogram buckets) added
    element-wise, nested dicts summed the same way; a key one row lacks counts as absent.

    `sum_counters(row["counters"] for row in control.traffic(route, since))` is a route's
    traffic across replicas. Lists of different lengths (bucket bounds that changed between
    releases) raise ValueError rather than add unlike buckets."""
    total: dict[str, Any] = {}
    for row in rows:
        _add_into(total, row, "")
    return total


def _add_into(total: dict[str, Any], row: Mapping[str, Any], path: str) -> None:
    for key, value in row.items():
        where = f"{path}.{key}" if path else str(key)
        if key not in total:
            total[key] = _copy(value, where)
        else:
            total[key] = _add(total[key], value, where)


def _add(a: Any, b: Any, where: str) -> Any:
    if _is_number(a) and _is_number(b):
        return a + b
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            raise ValueError(f"{where}: cannot add lists of {len(a)} and {len(b)} items")
        return [_add(x, y, f"{where}[{i}]") for i, (x, y) in enumerate(zip(a, b, strict=True))]
    if isinstance(a, dict) and isinstance(b, Mapping):
        _add_into(a, b, where)
        return a
    raise TypeError(f"{where}: cannot add {type(a).__name__} and {type(b).__name__}")


def _copy(value: Any, where: str) -> Any:
    # A copy, so summing never changes the caller's rows.
    if _is_number(value):
        return value
    if isinstance(value, list):
        return [_copy(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        _add_into(out, value, where)
        return out
    raise TypeError(f"{where}: a counter must be a number, a list or a dict, not {value!r}")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
