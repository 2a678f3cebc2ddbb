"""The Grafana dashboards and provisioning: well formed, on a selectable data source, and
querying only metrics apprentice exports."""

from __future__ import annotations

from typing import Any

import yaml

from monitoring.docs import series_names
from monitoring.queries import (
    MONITORING_DIR,
    dashboard_queries,
    dashboards,
    metric_names_in,
    recording_names,
)

PROVISIONING = MONITORING_DIR / "grafana" / "provisioning"


def names_in(board: dict[str, Any]) -> set[str]:
    return {
        name
        for panel in board["panels"]
        for target in panel["targets"]
        for name in metric_names_in(target["expr"])
    }


def test_both_dashboards_exist_with_unique_ids() -> None:
    boards = dashboards()
    assert set(boards) == {"overview.json", "rollout.json"}
    uids = [b["uid"] for b in boards.values()]
    assert len(set(uids)) == len(uids)
    for board in boards.values():
        ids = [p["id"] for p in board["panels"]]
        assert len(set(ids)) == len(ids), f"{board['uid']} repeats a panel id"


def test_every_panel_uses_the_datasource_variable() -> None:
    for name, board in dashboards().items():
        variables = {v["name"]: v for v in board["templating"]["list"]}
        assert variables["datasource"]["type"] == "datasource"
        assert variables["datasource"]["query"] == "prometheus"
        assert variables["route"]["datasource"]["uid"] == "${datasource}"
        for panel in board["panels"]:
            assert panel["datasource"]["uid"] == "${datasource}", f"{name}: {panel['title']}"
            assert panel["targets"], f"{name}: {panel['title']} has no query"
            for target in panel["targets"]:
                assert target["datasource"]["uid"] == "${datasource}"


def test_panels_query_only_exported_metrics_and_recording_rules() -> None:
    known = series_names() | recording_names()
    for query in dashboard_queries():
        names = metric_names_in(query.expr)
        assert names, f"{query.source} reads no apprentice metric"
        assert names <= known, f"{query.source} reads unknown metrics {names - known}"


def test_overview_covers_traffic_cost_latency_errors_and_capture() -> None:
    names = names_in(dashboards()["overview.json"])
    assert {
        "route_served_by:apprentice_requests:rate5m",
        "route:apprentice_teacher_cost_usd:increase1h",
        "route:apprentice_teacher_cost_avoided_usd:increase1h",
        "apprentice_request_duration_seconds_bucket",
        "apprentice_requests_total",
        "apprentice_capture_rows_spilled_total",
        "apprentice_capture_write_failures_total",
        "apprentice_capture_queue_depth",
    } <= names


def test_rollout_covers_canary_shadow_fallbacks_drift_and_retrain() -> None:
    board = dashboards()["rollout.json"]
    route = next(v for v in board["templating"]["list"] if v["name"] == "route")
    assert not route["multi"], "the rollout dashboard shows one route at a time"
    assert {
        "apprentice_canary_state",
        "apprentice_canary_weight_ratio",
        "route_verdict:apprentice_shadow_comparisons:rate5m",
        "route_reason:apprentice_fallbacks:rate5m",
        "apprentice_drift_score",
        "apprentice_drift_threshold",
        "apprentice_retrain_runs_total",
        "apprentice_retrain_last_eval",
        "apprentice_cascade_coverage_ratio",
        "apprentice_cascade_agreement_ratio",
    } <= names_in(board)


def test_rollout_shows_predicted_and_live_cascade_side_by_side() -> None:
    board = dashboards()["rollout.json"]
    panel = next(p for p in board["panels"] if p["title"].startswith("Cascade"))
    exprs = [t["expr"] for t in panel["targets"]]
    for metric in ("apprentice_cascade_coverage_ratio", "apprentice_cascade_agreement_ratio"):
        for source in ("predicted", "live"):
            assert any(metric in e and f'source="{source}"' in e for e in exprs), (metric, source)


def test_provisioning_points_at_prometheus_and_the_dashboards() -> None:
    datasources = yaml.safe_load((PROVISIONING / "datasources" / "prometheus.yml").read_text())
    (source,) = datasources["datasources"]
    assert source["type"] == "prometheus" and source["url"].endswith(":9090")
    providers = yaml.safe_load((PROVISIONING / "dashboards" / "apprentice.yml").read_text())
    (provider,) = providers["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"
