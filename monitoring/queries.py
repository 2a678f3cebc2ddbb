"""Every PromQL expression apprentice ships: dashboard panels and Prometheus rules.

Tests use these to check each query statically (it reads only metrics apprentice exports) and
live (a real Prometheus accepts it). Dashboard template variables are substituted the way
Grafana would before a query reaches Prometheus.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

MONITORING_DIR = Path(__file__).resolve().parent
PROMETHEUS_DIR = MONITORING_DIR / "prometheus"
DASHBOARD_DIR = MONITORING_DIR / "grafana" / "dashboards"
RULE_FILES = (PROMETHEUS_DIR / "recording_rules.yml", PROMETHEUS_DIR / "alert_rules.yml")

# String literals, label matchers and range/subquery brackets hold no metric names but can hold
# text that looks like one (`{route=~"apprentice_.*"}`, `[5m:1m]`); they are blanked first.
_NOT_NAMES = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|\{[^}]*\}|\[[^\]]*\]')
_IDENTIFIER = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


@dataclass(frozen=True)
class Query:
    """One shipped expression and where it comes from."""

    source: str  # "overview.json: Requests by who served them" or "alert_rules.yml: Name"
    expr: str


def metric_names_in(expr: str) -> set[str]:
    """Apprentice metric and recording-rule names a PromQL expression reads.

    A name counts if it starts with `apprentice_` or contains a colon (recording rules); other
    identifiers are functions, keywords, label names or other exporters' metrics.
    """
    names = _IDENTIFIER.findall(_NOT_NAMES.sub(" ", expr))
    return {n for n in names if n.startswith("apprentice_") or ":" in n}


def rules(path: Path) -> list[dict[str, Any]]:
    """The rules of a Prometheus rule file, all groups together."""
    groups = yaml.safe_load(path.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def recording_names() -> set[str]:
    """Names of the shipped recording rules."""
    return {rule["record"] for path in RULE_FILES for rule in rules(path) if "record" in rule}


def rule_queries() -> Iterator[Query]:
    """Every recording and alerting rule expression."""
    for path in RULE_FILES:
        for rule in rules(path):
            yield Query(f"{path.name}: {rule.get('record') or rule.get('alert')}", rule["expr"])


def dashboards() -> dict[str, dict[str, Any]]:
    """Every shipped dashboard, by file name."""
    return {p.name: json.loads(p.read_text()) for p in sorted(DASHBOARD_DIR.glob("*.json"))}


def dashboard_queries(variables: Mapping[str, str] | None = None) -> Iterator[Query]:
    """Every panel target of every dashboard, with template variables substituted."""
    values = {"__rate_interval": "1m", "__interval": "15s", "route": ".*", **(variables or {})}
    for name, board in dashboards().items():
        for panel in board["panels"]:
            for target in panel.get("targets", []):
                yield Query(f"{name}: {panel['title']}", _substitute(target["expr"], values))


def _substitute(expr: str, values: Mapping[str, str]) -> str:
    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in values:
            raise KeyError(f"dashboard variable ${name} has no test value")
        return values[name]

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", value, expr)
