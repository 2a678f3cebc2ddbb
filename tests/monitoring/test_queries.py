"""Finding metric names in PromQL and substituting dashboard variables."""

from __future__ import annotations

import pytest

from monitoring import queries
from monitoring.queries import dashboard_queries, metric_names_in, recording_names, rule_queries


def test_metric_names_skip_functions_labels_strings_and_ranges() -> None:
    expr = (
        'sum by (route) (rate(apprentice_requests_total{route=~"$route",x="apprentice_no"}'
        "[$__rate_interval])) / route:apprentice_requests:rate5m"
        " + max_over_time(apprentice_drift_score[5m:1m]) + up"
    )
    assert metric_names_in(expr) == {
        "apprentice_requests_total",
        "route:apprentice_requests:rate5m",
        "apprentice_drift_score",
    }


def test_dashboard_variables_are_substituted() -> None:
    queries = list(dashboard_queries({"route": "support"}))
    assert queries
    assert all("$" not in q.expr for q in queries)
    assert any('route="support"' in q.expr for q in queries)


def test_rules_are_listed_with_their_names() -> None:
    sources = {q.source for q in rule_queries()}
    assert "alert_rules.yml: ApprenticeDriftAct" in sources
    assert "route:apprentice_requests:rate5m" in recording_names()


def test_unknown_dashboard_variable_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    board = {"panels": [{"title": "t", "targets": [{"expr": 'x{a="$nope"}'}]}]}
    monkeypatch.setattr(queries, "dashboards", lambda: {"b.json": board})
    with pytest.raises(KeyError, match="nope"):
        list(queries.dashboard_queries())
