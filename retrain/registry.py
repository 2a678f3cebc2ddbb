"""The student registry: ``data_dir/students/<route>/v<N>/`` folders and their manifests.

A student is written into a hidden staging folder (``.v<N>.staging``) and renamed into place
when complete, so a reader (the server polling for new students) never sees half a student.
``students/<route>/base/`` holds the route's tiny base, shared by its adapters.

manifest.json keys: version, route, status (candidate | rejected; the canary may later write
promoted | retired), created_at, base, base_path, tokenizer (a path), method, dataset_version,
seed, config, training, metrics {student, base, current}, gate {passed, reasons},
warm_start_from, replay_rows, versions (library versions).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CANDIDATE, REJECTED, PROMOTED = "candidate", "rejected", "promoted"


def students_root(data_dir: Path, route: str) -> Path:
    return data_dir / "students" / route


def base_dir(data_dir: Path, route: str) -> Path:
    """Where the route's tiny base lives."""
    return students_root(data_dir, route) / "base"


def student_dir(data_dir: Path, route: str, version: int) -> Path:
    return students_root(data_dir, route) / f"v{version}"


@dataclass(frozen=True)
class StudentInfo:
    route: str
    version: int
    path: Path
    status: str
    created_at: str
    dataset_version: int | None
    method: str
    base: str
    exact_match: float | None
    gate_passed: bool

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "path": str(self.path)}


def _versions_in(root: Path) -> list[int]:
    if not root.exists():
        return []
    out = []
    for child in root.iterdir():
        name = child.name.removeprefix(".").removesuffix(".staging")
        if name.startswith("v") and name[1:].isdigit():
            out.append(int(name[1:]))
    return sorted(out)


def allocate(data_dir: Path, route: str) -> tuple[int, Path]:
    """Reserve the next version number; returns it and a fresh staging folder."""
    root = students_root(data_dir, route)
    root.mkdir(parents=True, exist_ok=True)
    while True:
        version = max(_versions_in(root), default=0) + 1
        staging = root / f".v{version}.staging"
        try:
            staging.mkdir()  # exclusive: two runs never get the same version
        except FileExistsError:
            continue
        return version, staging


def publish(staging: Path) -> Path:
    """Rename a complete staging folder to its version folder."""
    final = staging.with_name(staging.name.removeprefix(".").removesuffix(".staging"))
    os.replace(staging, final)
    return final


def read_manifest(path: Path) -> dict[str, Any]:
    manifest: dict[str, Any] = json.loads((path / "manifest.json").read_text())
    return manifest


def write_json(path: Path, value: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(value, indent=2, default=str))
    os.replace(tmp, path)


def list_students(data_dir: Path, route: str | None = None) -> list[StudentInfo]:
    """Published students, by route then version; `route=None` lists every route."""
    root = data_dir / "students"
    if not root.exists():
        return []
    routes = [route] if route else sorted(p.name for p in root.iterdir() if p.is_dir())
    out = []
    for name in routes:
        parent = students_root(data_dir, name)
        for version in _versions_in(parent):
            path = student_dir(data_dir, name, version)
            if (path / "manifest.json").exists():
                out.append(_info(name, version, path, read_manifest(path)))
    return out


def _info(route: str, version: int, path: Path, m: dict[str, Any]) -> StudentInfo:
    student_metrics = (m.get("metrics") or {}).get("student") or {}
    return StudentInfo(
        route=route,
        version=version,
        path=path,
        status=m.get("status", "unknown"),
        created_at=m.get("created_at", ""),
        dataset_version=m.get("dataset_version"),
        method=m.get("method", ""),
        base=m.get("base", ""),
        exact_match=student_metrics.get("exact_match"),
        gate_passed=bool((m.get("gate") or {}).get("passed")),
    )


def show_student(data_dir: Path, route: str, version: int) -> dict[str, Any]:
    """Manifest and eval report of one student; FileNotFoundError names what is missing."""
    path = student_dir(data_dir, route, version)
    if not (path / "manifest.json").exists():
        raise FileNotFoundError(
            f"No student v{version} for route {route!r}; `apprentice students list` shows them."
        )
    report_path = path / "eval.json"
    report = json.loads(report_path.read_text()) if report_path.exists() else None
    return {"path": str(path), "manifest": read_manifest(path), "eval": report}


def current_student(data_dir: Path, route: str) -> StudentInfo | None:
    """The route's current student: the newest promoted one, else the newest candidate."""
    students = list_students(data_dir, route)
    for status in (PROMOTED, CANDIDATE):
        chosen = [s for s in students if s.status == status]
        if chosen:
            return chosen[-1]
    return None


def set_status(path: Path, status: str) -> None:
    """Change a student's status (the canary controller promotes and retires)."""
    manifest = read_manifest(path)
    manifest["status"] = status
    write_json(path / "manifest.json", manifest)
