"""Dataset files: pairs to the Parquet contract, and earlier eval splits read back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from curation.dataset import DATASET_SCHEMA, dataset_dir, dataset_versions
from curation.novel import IN_DISTRIBUTION, NOVEL, NovelSlice
from curation.pairs import Pair, answer_text
from curation.split import PriorEval


def _json(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


def dataset_table(
    pairs: list[Pair], novel: NovelSlice | None = None, evaluation: bool = False
) -> pa.Table:
    """The pairs as a table of `DATASET_SCHEMA` (curation/dataset.py); eval rows are labelled
    with their slice."""
    novel = novel or NovelSlice()
    spans = [novel.spans.get(p.request_id) for p in pairs]
    slices = [
        (NOVEL if p.request_id in novel.request_ids else IN_DISTRIBUTION) if evaluation else None
        for p in pairs
    ]
    columns: dict[str, list[Any]] = {
        "request_id": [p.request_id for p in pairs],
        "task": [p.task for p in pairs],
        "session_hash": [p.session_hash for p in pairs],
        "teacher": [p.teacher for p in pairs],
        "prompt_fingerprint": [p.prompt_fingerprint for p in pairs],
        "messages": [_json(p.messages) for p in pairs],
        "tools": [_json(p.tools) for p in pairs],
        "response_format": [_json(p.response_format) for p in pairs],
        "answer": [_json(p.answer) for p in pairs],
        "answer_text": [answer_text(p.answer) for p in pairs],
        "teacher_logprobs": [p.teacher_logprobs for p in pairs],
        "weight": [float(p.weight) for p in pairs],
        "cluster": [p.cluster for p in pairs],
        "group_id": [p.group_id for p in pairs],
        "started_at": [p.started_at for p in pairs],
        "spans": [None if s is None else _json([x.to_json() for x in s]) for s in spans],
        "slice": slices,
    }
    return pa.Table.from_pydict(columns, schema=DATASET_SCHEMA)


def read_prior_eval(data_dir: Path, route: str) -> PriorEval:
    """Request ids, sessions, groups and span groups held in eval by any earlier version."""
    ids: set[str] = set()
    sessions: set[str] = set()
    groups: set[str] = set()
    keys: set[str] = set()
    for version in dataset_versions(data_dir, route):
        keys.update(_held_out_keys(dataset_dir(data_dir, route, version)))
        path = dataset_dir(data_dir, route, version) / "eval.parquet"
        if not path.exists():
            continue
        table = pq.read_table(path, columns=["request_id", "session_hash", "group_id"]).to_pydict()
        ids.update(v for v in table["request_id"] if v)
        sessions.update(v for v in table["session_hash"] if v)
        groups.update(v for v in table["group_id"] if v)
    return PriorEval(frozenset(ids), frozenset(sessions), frozenset(groups), frozenset(keys))


def _held_out_keys(version_dir: Path) -> list[str]:
    try:
        manifest = orjson.loads((version_dir / "manifest.json").read_bytes())
    except (FileNotFoundError, orjson.JSONDecodeError):
        return []
    held = (manifest.get("novel") or {}).get("held_out") or []
    return [str(h["key"]) for h in held if isinstance(h, dict) and "key" in h]
