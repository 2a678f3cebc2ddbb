from __future__ import annotations

import json
from pathlib import Path

import pytest

from retrain import registry


def _publish(data_dir: Path, route: str, status: str, exact: float) -> Path:
    version, staging = registry.allocate(data_dir, route)
    manifest = {
        "version": version,
        "route": route,
        "status": status,
        "created_at": "2026-01-01T00:00:00",
        "base": "tiny",
        "base_path": str(registry.base_dir(data_dir, route)),
        "method": "lora",
        "dataset_version": 1,
        "metrics": {"student": {"exact_match": exact}},
        "gate": {"passed": status != registry.REJECTED, "reasons": []},
    }
    registry.write_json(staging / "manifest.json", manifest)
    registry.write_json(staging / "eval.json", {"worst": []})
    return registry.publish(staging)


def test_versions_increase_and_staging_is_hidden(tmp_path: Path) -> None:
    first = _publish(tmp_path, "r", registry.CANDIDATE, 0.9)
    version, staging = registry.allocate(tmp_path, "r")  # a run in progress
    assert first.name == "v1" and version == 2 and staging.name == ".v2.staging"
    assert [s.version for s in registry.list_students(tmp_path, "r")] == [1]
    assert registry.allocate(tmp_path, "r")[0] == 3  # never reuses a reserved number


def test_list_and_show(tmp_path: Path) -> None:
    _publish(tmp_path, "a", registry.CANDIDATE, 0.95)
    _publish(tmp_path, "b", registry.REJECTED, 0.5)
    students = registry.list_students(tmp_path)
    assert [(s.route, s.version, s.status) for s in students] == [
        ("a", 1, "candidate"),
        ("b", 1, "rejected"),
    ]
    assert students[0].exact_match == 0.95 and students[0].gate_passed
    json.dumps([s.as_dict() for s in students])  # the CLI's --json output
    shown = registry.show_student(tmp_path, "a", 1)
    assert shown["manifest"]["status"] == "candidate" and shown["eval"] == {"worst": []}
    with pytest.raises(FileNotFoundError, match="apprentice students list"):
        registry.show_student(tmp_path, "a", 7)
    assert registry.list_students(tmp_path / "nowhere") == []


def test_current_student_prefers_promoted_then_newest_candidate(tmp_path: Path) -> None:
    assert registry.current_student(tmp_path, "r") is None
    v1 = _publish(tmp_path, "r", registry.CANDIDATE, 0.9)
    _publish(tmp_path, "r", registry.CANDIDATE, 0.92)
    _publish(tmp_path, "r", registry.REJECTED, 0.1)
    current = registry.current_student(tmp_path, "r")
    assert current is not None and current.version == 2
    registry.set_status(v1, registry.PROMOTED)
    current = registry.current_student(tmp_path, "r")
    assert current is not None and current.version == 1
