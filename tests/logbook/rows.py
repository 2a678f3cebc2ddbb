"""A logged row as the proxy hands it to the writer, with every column filled in."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from logbook.schema import ROW_SCHEMA_VERSION, RequestRow

T0 = datetime(2026, 11, 23, 12, 0, 0)


def Row(request_id: str, route: Any = "r", **changes: Any) -> RequestRow:
    """A successful teacher-served row of `route` (None breaks the NOT NULL constraint)."""
    values: dict[str, Any] = dict(
        request_id=request_id, schema_version=ROW_SCHEMA_VERSION, started_at=T0, ended_at=T0,
        route=route, task=None, session_hash=None, served_by="teacher", teacher="t",
        upstream_model=None, prompt_fingerprint=None, request="{}", response=None, status=200,
        outcome="ok", error=None, finish_reason="stop", truncated=False, latency_ms=1.0,
        ttft_ms=1.0, prompt_tokens=1, completion_tokens=1, total_tokens=2,
        usage_estimated=False, cost_usd=None, stream=False, tags=None, key_id=None,
        teacher_logprobs=None, shadow_pair_id=None, endpoint="chat/completions",
    )  # fmt: skip
    return RequestRow(**(values | changes))
