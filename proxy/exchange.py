"""One proxied call, as raw facts on the response path and as a log row in the writer thread.

The handler only records what it already has (bytes, timings, status). `to_row` does the
rest later, on the logbook's thread: parsing, stream reassembly, token counts, cost.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from apprentice.config import RouteConfig
from apprentice.schema import ROW_SCHEMA_VERSION
from monitoring.metrics import Metrics
from proxy.sse import reassemble

log = logging.getLogger("apprentice.capture")


class Pricer:
    """Teacher prices: the route's override, else litellm's price table (loaded lazily)."""

    def __init__(self) -> None:
        self._unknown: set[str] = set()

    def cost(self, route: RouteConfig, prompt_tokens: int, completion_tokens: int) -> float | None:
        if route.input_cost_per_mtok is not None or route.output_cost_per_mtok is not None:
            return (
                prompt_tokens * (route.input_cost_per_mtok or 0.0)
                + completion_tokens * (route.output_cost_per_mtok or 0.0)
            ) / 1e6
        if route.teacher in self._unknown:
            return None
        try:
            import litellm

            prompt_cost, completion_cost = litellm.cost_per_token(
                model=route.teacher,
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
            )
            return float(prompt_cost) + float(completion_cost)
        except Exception:  # a model missing from the price table has no cost, once logged
            log.info("no price for %s in litellm's table; cost left empty", route.teacher)
            self._unknown.add(route.teacher)
            return None


@dataclass
class Accounting:
    """What `to_row` needs besides the exchange itself, shared by all exchanges."""

    metrics: Metrics
    pricer: Pricer
    # Called with (route, messages) for every served request, in the writer thread (drift).
    observe_prompt: Callable[[str, Any], None] | None = None
    _children: dict[tuple[str, ...], Any] = field(default_factory=dict)

    def count(self, kind: str, route: str, served: str, amount: float) -> None:
        """Add to a token or cost counter (label lookups cached: this runs once a row)."""
        key = (kind, route, served)
        child = self._children.get(key)
        if child is None:
            m = self.metrics
            if kind in ("prompt", "completion"):
                child = m.tokens.labels(route, served, kind)
            elif served == "teacher":
                child = m.teacher_cost.labels(route)
            else:
                child = m.teacher_cost_avoided.labels(route)
            self._children[key] = child
        child.inc(amount)


@dataclass
class Exchange:
    request_id: str
    route: str
    route_config: RouteConfig
    accounting: Accounting
    started_at: datetime
    payload: dict[str, Any]
    request_body: bytes
    stream: bool
    served_by: str = "teacher"
    capture: bool = True
    task: str | None = None
    session_hash: str | None = None
    key_id: str | None = None
    status: int = 0
    outcome: str = "ok"
    error: str | None = None
    response_body: bytes | None = None
    chunks: list[bytes] = field(default_factory=list)
    latency_s: float | None = None
    ttft_s: float | None = None
    proxy_added_logprobs: bool = False
    shadow_pair_id: str | None = None
    tags: dict[str, Any] | None = None
    shadow_version: str | None = None  # also ask this student, off the response path
    fallback: str | None = None  # why the student's answer was replaced by the teacher's
    shadow: bool = False  # a shadow answer: logged for comparison, never served or billed

    def to_row(self) -> dict[str, Any] | None:
        """The log row, or None when this call is not captured (its metrics still count)."""
        response, truncated = self._response()
        usage = (response or {}).get("usage") or {}
        prompt_tokens = usage.get("prompt_tokens")
        completion_tokens = usage.get("completion_tokens")
        estimated = False
        if response is not None and (prompt_tokens is None or completion_tokens is None):
            prompt_tokens, completion_tokens = _estimate_tokens(self.payload, response)
            estimated = True
        cost = None
        if not self.shadow:
            cost = self._account(prompt_tokens or 0, completion_tokens or 0, response is not None)
            if self.accounting.observe_prompt is not None:
                self.accounting.observe_prompt(self.route, self.payload.get("messages"))
        if not self.capture:
            return None
        choices = (response or {}).get("choices") or []
        first = choices[0] if choices else {}
        ended = self.started_at + timedelta(seconds=self.latency_s or 0.0)
        return {
            "request_id": self.request_id,
            "schema_version": ROW_SCHEMA_VERSION,
            "started_at": self.started_at.replace(tzinfo=None),
            "ended_at": ended.replace(tzinfo=None),
            "route": self.route,
            "task": self.task,
            "session_hash": self.session_hash,
            "served_by": self.served_by,
            "teacher": self.route_config.teacher,
            "upstream_model": (response or {}).get("model"),
            "prompt_fingerprint": prompt_fingerprint(self.payload.get("messages")),
            "request": self.request_body.decode("utf-8", "replace"),
            "response": orjson.dumps(response).decode() if response is not None else None,
            "status": self.status,
            "outcome": self.outcome,
            "error": self.error,
            "finish_reason": first.get("finish_reason"),
            "truncated": truncated,
            "latency_ms": None if self.latency_s is None else self.latency_s * 1000,
            "ttft_ms": None if self.ttft_s is None else self.ttft_s * 1000,
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": None
            if prompt_tokens is None
            else prompt_tokens + (completion_tokens or 0),
            "usage_estimated": estimated,
            "cost_usd": cost,
            "stream": self.stream,
            "tags": orjson.dumps(self.tags).decode() if self.tags else None,
            "key_id": self.key_id,
            "teacher_logprobs": _logprobs(choices),
            "shadow_pair_id": self.shadow_pair_id,
        }

    def _response(self) -> tuple[dict[str, Any] | None, bool]:
        if not self.stream or self.status != 200:
            if not self.response_body:
                return None, False
            try:
                parsed = orjson.loads(self.response_body)
            except orjson.JSONDecodeError:
                return {"raw": self.response_body.decode("utf-8", "replace")}, False
            return (parsed if isinstance(parsed, dict) else {"raw": parsed}), False
        result = reassemble(self.chunks)
        if result.error is not None and self.error is None:
            self.error = orjson.dumps(result.error).decode()
            self.outcome = "upstream_error"
        return result.response, not result.done

    def _account(self, prompt_tokens: int, completion_tokens: int, answered: bool) -> float | None:
        accounting, route = self.accounting, self.route
        served = "teacher" if self.served_by == "teacher" else "student"
        if prompt_tokens:
            accounting.count("prompt", route, served, prompt_tokens)
        if completion_tokens:
            accounting.count("completion", route, served, completion_tokens)
        if not answered or self.status != 200:
            return None
        cost = accounting.pricer.cost(self.route_config, prompt_tokens, completion_tokens)
        if cost is not None:
            accounting.count("cost", route, served, cost)
        return cost if served == "teacher" else None


def prompt_fingerprint(messages: Any) -> str | None:
    """A short hash of the system/developer prompt: a changed prompt is a new behaviour."""
    if not isinstance(messages, list):
        return None
    system = [
        m.get("content")
        for m in messages
        if isinstance(m, dict) and m.get("role") in {"system", "developer"}
    ]
    return hashlib.sha256(orjson.dumps(system)).hexdigest()[:16]


def session_hash(session: str | None) -> str | None:
    if not session:
        return None
    return hashlib.sha256(session.encode()).hexdigest()[:16]


def now_utc() -> datetime:
    return datetime.now(UTC)


def _logprobs(choices: list[dict[str, Any]]) -> str | None:
    found = [c.get("logprobs") for c in choices if c.get("logprobs")]
    return orjson.dumps(found[0] if len(found) == 1 else found).decode() if found else None


def _estimate_tokens(payload: dict[str, Any], response: dict[str, Any]) -> tuple[int, int]:
    # The teacher sent no usage (a stream without include_usage): about 4 characters a token,
    # marked as estimated in the row.
    prompt = len(orjson.dumps(payload.get("messages") or []))
    answer = sum(len(orjson.dumps(c.get("message") or {})) for c in response.get("choices") or [])
    return max(1, prompt // 4), max(0, answer // 4)
