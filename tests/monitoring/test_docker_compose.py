"""monitoring/docker-compose.yml cannot run here (no Docker): check its structure and that
everything it mounts or points at exists."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from monitoring.queries import MONITORING_DIR

COMPOSE = MONITORING_DIR / "docker-compose.yml"


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def mounts(service: dict[str, Any]) -> dict[str, Path]:
    """Container path -> host path of each bind mount (named volumes are skipped)."""
    result = {}
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("."):
            result[target] = (MONITORING_DIR / source).resolve()
    return result


def container_file(service: dict[str, Any], path: str) -> Path:
    """The host file behind a path inside the container, through its bind mounts."""
    for target, source in mounts(service).items():
        if path.startswith(target + "/"):
            return source / path.removeprefix(target + "/")
    raise AssertionError(f"{path} is not inside any bind mount")


def test_services_use_pinned_images() -> None:
    services = compose()["services"]
    assert set(services) == {"prometheus", "grafana"}
    for name, service in services.items():
        image = service["image"]
        assert ":" in image and not image.endswith(":latest"), f"{name} image is not pinned"


def test_every_bind_mount_exists() -> None:
    for name, service in compose()["services"].items():
        for target, source in mounts(service).items():
            assert source.exists(), f"{name} mounts missing {source} at {target}"


def test_prometheus_reads_the_shipped_config_and_rules() -> None:
    service = compose()["services"]["prometheus"]
    flag = next(a for a in service["command"] if a.startswith("--config.file="))
    config_path = container_file(service, flag.removeprefix("--config.file="))
    assert config_path == MONITORING_DIR / "prometheus" / "prometheus.yml"
    config = yaml.safe_load(config_path.read_text())
    for rule_file in config["rule_files"]:
        assert (config_path.parent / rule_file).is_file(), rule_file


def test_grafana_gets_provisioning_and_dashboards() -> None:
    service = compose()["services"]["grafana"]
    assert container_file(service, "/etc/grafana/provisioning/datasources").is_dir()
    provider = yaml.safe_load(
        (MONITORING_DIR / "grafana/provisioning/dashboards/apprentice.yml").read_text()
    )["providers"][0]
    dashboards = container_file(service, provider["options"]["path"] + "/overview.json")
    assert dashboards.is_file()
    assert "prometheus" in service["depends_on"]
