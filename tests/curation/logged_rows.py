"""Builders of logged rows, sealed segments and parsed pairs for the curation tests."""

from __future__ import annotations

import itertools
import json
import zlib
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from curation.pairs import Pair
from logbook.schema import ROW_SCHEMA_VERSION, arrow_schema
from logbook.sealing import segment_path

T0 = datetime(2026, 1, 1, 12, 0, 0)
LOGBOOK = "0123456789ab0123456789ab01234567"  # the identity segments of these tests carry
_ids = itertools.count(1)


def request_row(
    prompt: str,
    answer: str | None = "Sure, here it is.",
    *,
    route: str = "r",
    request_id: str | None = None,
    system: str = "You are helpful.",
    minute: int = 0,
    **overrides: Any,
) -> dict[str, Any]:
    """A logged `requests` row of a successful teacher call (override any column)."""
    rid = request_id or f"req-{next(_ids)}"
    request = {
        "model": route,
        "messages": [{"role": "system", "content": system}, {"role": "user", "content": prompt}],
    }
    choice = {
        "index": 0,
        "finish_reason": "stop",
        "message": {"role": "assistant", "content": answer},
    }
    response = {"id": "chatcmpl-1", "object": "chat.completion", "choices": [choice]}
    row: dict[str, Any] = dict.fromkeys(arrow_schema("requests").names)
    row.update(
        request_id=rid,
        schema_version=ROW_SCHEMA_VERSION,
        started_at=T0 + timedelta(minutes=minute),
        ended_at=T0 + timedelta(minutes=minute, seconds=1),
        route=route,
        served_by="teacher",
        teacher="openai/gpt-4o-mini",
        prompt_fingerprint=f"fp-{zlib.crc32(system.encode())}",
        request=json.dumps(request),
        response=json.dumps(response) if answer is not None else None,
        status=200,
        outcome="ok",
        finish_reason="stop",
        truncated=False,
        usage_estimated=False,
        stream=False,
    )
    row.update(overrides)
    return row


def feedback_row(
    request_id: str, score: float, correction: str | None = None, route: str = "r", minute: int = 0
) -> dict[str, Any]:
    return {
        "feedback_id": f"fb-{next(_ids)}",
        "request_id": request_id,
        "route": route,
        "created_at": T0 + timedelta(minutes=minute),
        "score": score,
        "label": None,
        "comment": None,
        "correction": correction,
    }


def write_segment(
    data_dir: Path,
    rows: list[dict[str, Any]],
    table: str = "requests",
    route: str = "r",
    first_seq: int | None = None,
) -> Path:
    """Seal `rows` as one Parquet segment the way the logbook does (leading int64 seq)."""
    first = first_seq if first_seq is not None else next(_ids) * 1000
    schema = pa.schema([pa.field("seq", pa.int64()), *arrow_schema(table)])
    data = [{"seq": first + i, **row} for i, row in enumerate(rows)]
    path = segment_path(data_dir, table, route, T0.date(), first, first + len(rows) - 1, LOGBOOK)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(data, schema=schema), path)
    return path


def make_pair(prompt: str, answer: str | dict[str, Any] = "ok", **fields: Any) -> Pair:
    """A parsed pair for stage tests that skip the select stage."""
    values: dict[str, Any] = {
        "request_id": f"req-{next(_ids)}",
        "task": None,
        "session_hash": None,
        "teacher": "t",
        "prompt_fingerprint": "fp",
        "started_at": T0,
        "messages": [{"role": "user", "content": prompt}],
        "tools": None,
        "response_format": None,
        "answer": answer if isinstance(answer, dict) else {"role": "assistant", "content": answer},
    }
    values.update(fields)
    return Pair(**values)
