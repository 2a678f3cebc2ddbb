"""A route's live figures as this process's metrics hold them: the cascade's predicted and
live coverage and agreement, and the drift scores beside their thresholds.

The console reads the same gauges Prometheus scrapes, so what it shows is what alerts fire on.
"""

from __future__ import annotations

from typing import Any

from monitoring.metrics import Metrics


def _samples(metrics: Metrics, name: str, route: str) -> list[tuple[dict[str, str], float]]:
    """(labels, value) of the samples of gauge `name` labelled with `route`."""
    found = []
    for family in metrics.registry.collect():
        for sample in family.samples:
            if sample.name == name and sample.labels.get("route") == route:
                found.append((dict(sample.labels), float(sample.value)))
    return found


def cascade_figures(metrics: Metrics, route: str) -> list[dict[str, Any]]:
    """Per student version: predicted and live coverage and agreement, and the live pairs."""
    versions: dict[str, dict[str, Any]] = {}
    for metric, key in (
        ("apprentice_cascade_coverage_ratio", "coverage"),
        ("apprentice_cascade_agreement_ratio", "agreement"),
    ):
        for labels, value in _samples(metrics, metric, route):
            entry = versions.setdefault(labels["version"], {"version": labels["version"]})
            entry[f"{labels['source']}_{key}"] = value
    for labels, value in _samples(metrics, "apprentice_cascade_live_pairs", route):
        versions.setdefault(labels["version"], {"version": labels["version"]})["live_pairs"] = value
    return [versions[v] for v in sorted(versions)]


def drift_figures(metrics: Metrics, route: str) -> dict[str, Any]:
    """Each drift method's latest score (None when it was not scored) with its warn and act
    thresholds and the level the score reaches; the window's size and the last run."""
    scores = {
        labels["method"]: value
        for labels, value in _samples(metrics, "apprentice_drift_score", route)
    }
    thresholds: dict[str, dict[str, float]] = {}
    for labels, value in _samples(metrics, "apprentice_drift_threshold", route):
        thresholds.setdefault(labels["method"], {})[labels["level"]] = value
    methods = []
    for method in sorted(thresholds.keys() | scores.keys()):
        score, levels = scores.get(method), thresholds.get(method, {})
        methods.append(
            {
                "method": method,
                "score": score,
                "warn": levels.get("warn"),
                "act": levels.get("act"),
                "level": _level(score, levels),
            }
        )
    window = _samples(metrics, "apprentice_drift_window_prompts", route)
    last = _samples(metrics, "apprentice_drift_last_run_timestamp_seconds", route)
    return {
        "methods": methods,
        "window_prompts": window[0][1] if window else None,
        "last_run": last[0][1] if last else None,
    }


def _level(score: float | None, thresholds: dict[str, float]) -> str | None:
    if score is None:
        return None
    if "act" in thresholds and score >= thresholds["act"]:
        return "act"
    if "warn" in thresholds and score >= thresholds["warn"]:
        return "warn"
    return "ok"
