"""The dataset contract: what curation writes and retrain reads.

``data_dir/datasets/<route>/<version>/`` holds ``train.parquet``, ``eval.parquet`` and
``manifest.json``. Versions are positive integers, increasing per route, folder names ``v1``,
``v2``, ... Each Parquet row is one (prompt, teacher answer) pair with these columns.
Datasets written before the `spans` and `slice` columns existed lack them; readers treat a
missing slice as ``in_distribution``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa

DATASET_SCHEMA = pa.schema(
    [
        pa.field("request_id", pa.string()),  # the logged request this pair came from
        pa.field("task", pa.string()),  # x-apprentice-task, or null
        pa.field("session_hash", pa.string()),  # or null
        pa.field("teacher", pa.string()),  # the route's teacher model string
        pa.field("prompt_fingerprint", pa.string()),  # hash of the system prompt
        pa.field("messages", pa.string()),  # JSON list of prompt messages (scrubbed)
        pa.field("tools", pa.string()),  # JSON list of tools offered, or null
        pa.field("response_format", pa.string()),  # JSON of response_format, or null
        pa.field("answer", pa.string()),  # JSON of the assistant message (content, tool_calls)
        pa.field("answer_text", pa.string()),  # the assistant text (tool calls as JSON text)
        pa.field("teacher_logprobs", pa.string()),  # JSON of the teacher's top logprobs, or null
        pa.field("weight", pa.float64()),  # training weight (feedback, oversampling)
        pa.field("cluster", pa.string()),  # prompt cluster id (balance stage)
        pa.field("group_id", pa.string()),  # near-duplicate group id (dedupe stage)
        pa.field("started_at", pa.timestamp("us")),  # when the request was made (UTC)
        pa.field("spans", pa.string()),  # JSON list of [kind, text]: its rare spans (novel)
        pa.field("slice", pa.string()),  # eval rows: "in_distribution" or "novel"; train: null
    ]
)


def dataset_root(data_dir: Path, route: str) -> Path:
    return data_dir / "datasets" / route


def dataset_dir(data_dir: Path, route: str, version: int) -> Path:
    return dataset_root(data_dir, route) / f"v{version}"


def dataset_versions(data_dir: Path, route: str) -> list[int]:
    """Finished dataset versions of a route (those with a manifest), oldest first."""
    root = dataset_root(data_dir, route)
    if not root.exists():
        return []
    versions = []
    for child in root.iterdir():
        named = child.name.startswith("v") and child.name[1:].isdigit()
        if named and (child / "manifest.json").exists():
            versions.append(int(child.name[1:]))
    return sorted(versions)


def read_manifest(data_dir: Path, route: str, version: int) -> dict[str, Any]:
    path = dataset_dir(data_dir, route, version) / "manifest.json"
    manifest: dict[str, Any] = json.loads(path.read_text())
    return manifest
