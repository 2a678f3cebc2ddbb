"""The shipped Prometheus config and rules: valid for promtool, tested, and only about metrics
apprentice exports."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from typing import Any

import pytest
import yaml

from monitoring.docs import series_names
from monitoring.queries import (
    PROMETHEUS_DIR,
    RULE_FILES,
    metric_names_in,
    recording_names,
    rule_queries,
    rules,
)

RULE_TESTS = sorted((PROMETHEUS_DIR / "tests").glob("*.yml"))
RECORDING_NAME = re.compile(r"^[a-z_]+:apprentice_[a-z0-9_]+:[a-z0-9_]+$")


def promtool() -> str:
    """The promtool binary; a skip outside CI, a failure in CI (where it must be installed)."""
    path = shutil.which("promtool")
    if path is None:
        message = "promtool not found: `sudo apt-get install prometheus` (Debian) runs rule tests"
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(message)
        pytest.skip(message)
    return path


def run(*args: str) -> None:
    result = subprocess.run(args, capture_output=True, text=True, check=False, timeout=120)
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout}{result.stderr}"


def test_promtool_accepts_the_config_and_rules() -> None:
    tool = promtool()
    run(tool, "check", "rules", *map(str, RULE_FILES))
    run(tool, "check", "config", str(PROMETHEUS_DIR / "prometheus.yml"))


def test_promtool_rule_tests_pass() -> None:
    assert RULE_TESTS, "no promtool tests under monitoring/prometheus/tests/"
    run(promtool(), "test", "rules", *map(str, RULE_TESTS))


def test_every_alert_is_tested_firing_and_quiet() -> None:
    cases: dict[str, list[list[Any]]] = {}
    for path in RULE_TESTS:
        for group in yaml.safe_load(path.read_text())["tests"]:
            for case in group.get("alert_rule_test", []):
                cases.setdefault(case["alertname"], []).append(case.get("exp_alerts") or [])
    for rule in rules(RULE_FILES[1]):
        seen = cases.get(rule["alert"], [])
        assert any(seen), f"{rule['alert']} has no test where it fires"
        assert not all(seen), f"{rule['alert']} has no test where it stays quiet"


def test_every_alert_says_what_happened_and_what_to_do() -> None:
    for rule in rules(RULE_FILES[1]):
        assert rule["alert"].startswith("Apprentice"), rule["alert"]
        assert rule["labels"]["severity"] in {"info", "warning", "critical"}, rule["alert"]
        assert rule["annotations"]["summary"].strip(), rule["alert"]
        assert rule["annotations"]["runbook"].strip(), rule["alert"]


def test_recording_rules_are_named_level_metric_operations() -> None:
    for name in recording_names():
        assert RECORDING_NAME.match(name), f"{name} is not level:metric:operations"


def test_rules_read_only_metrics_apprentice_exports() -> None:
    known = series_names() | recording_names()
    for query in rule_queries():
        names = metric_names_in(query.expr)
        assert names, f"{query.source} reads no apprentice metric"
        assert names <= known, f"{query.source} reads unknown metrics {names - known}"


def test_scrape_config_targets_apprentice() -> None:
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    (job,) = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    assert job["static_configs"][0]["targets"] == ["127.0.0.1:8000"]
    for rule_file in config["rule_files"]:
        assert (PROMETHEUS_DIR / rule_file).is_file(), rule_file
