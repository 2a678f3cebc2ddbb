"""The retrain job's side of the student registry: reserving a version and publishing it.

A student is written into a hidden staging folder (``.v<N>.staging``) and renamed into place
when complete, so a reader (the canary loop polling for new students) never sees half a
student. Where students live, how they are listed and loaded, and their statuses are the
student contract's (`retrain.students`).

manifest.json keys: version, route, status (the gate's verdict: candidate | rejected; the
canary loop records what happens next in status.json), created_at, base, base_path, tokenizer
(a path), method, dataset_version, seed, config, training, metrics {student, base, current},
gate {passed, reasons}, warm_start_from, replay_rows, versions (library versions).
"""

from __future__ import annotations

import os
from pathlib import Path

from retrain.students import students_root, versions_in


def allocate(data_dir: Path, route: str) -> tuple[int, Path]:
    """Reserve the next version number; returns it and a fresh staging folder."""
    root = students_root(data_dir, route)
    root.mkdir(parents=True, exist_ok=True)
    while True:
        version = max(versions_in(root), default=0) + 1
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
