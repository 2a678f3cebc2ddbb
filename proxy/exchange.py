"""One proxied call: raw facts gathered on the response path, and the log row built from them.

The handler only records what it already has (bytes, timings, status). When the answer is
complete, `build_row` turns those facts into the logbook's `RequestRow`: parsing the answer,
reassembling a stream, counting tokens, pricing. It builds a row and does nothing else; the
metrics and drift a finished request feeds are counted where it is answered (`chat.finish`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from logbook.schema import ROW_SCHEMA_VERSION, RequestRow
from logbook.surfaces import CHAT, COMPLETIONS, MESSAGES, PAIR_ENDPOINTS, RESPONSES
from proxy.accounting import Pricer
from proxy.redaction import Redactor
from proxy.settings import RouteSettings
from proxy.sse import reassemble
from proxy.streams import reassemble_completions, reassemble_messages, reassemble_responses


@dataclass
class Exchange:
    request_id: str
    route: RouteSettings
    started_at: datetime
    payload: dict[str, Any]
    request_body: bytes
    stream: bool
    endpoint: str = CHAT
    chat: dict[str, Any] | None = None  # the request in chat form (fingerprint, drift, students)
    priced_model: str | None = None  # priced by this model's table entry, not the route's
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

    @property
    def by_student(self) -> bool:
        return self.served_by != "teacher"


def build_row(exchange: Exchange, pricer: Pricer, redactor: Redactor | None = None) -> RequestRow:
    """The log row of a finished exchange (a stream's error event marks it upstream_error).

    Answers arrive redacted already (the teacher's bytes are redacted as they come in); the
    client's own request may hold a configured secret too, and is redacted for the row."""
    x = exchange
    request = x.request_body.decode("utf-8", "replace")
    if redactor is not None:
        request = redactor.document_text(request)
    response, truncated, stream_error = _response(x)
    if stream_error is not None and x.error is None:
        x.error, x.outcome = stream_error, "upstream_error"
    prompt_tokens, completion_tokens = _usage(x.endpoint, response)
    estimated = False
    if response is not None and (prompt_tokens is None or completion_tokens is None):
        prompt_tokens, completion_tokens = _estimate_tokens(x, response)
        estimated = True
    cost = None
    if not x.by_student and response is not None and x.status == 200:
        tokens = (prompt_tokens or 0, completion_tokens or 0)
        cost = (
            pricer.cost_of_model(x.priced_model, *tokens)
            if x.priced_model is not None
            else pricer.cost(x.route.name, *tokens)
        )
    choices = _list(response.get("choices")) if isinstance(response, dict) else []
    first = choices[0] if choices and isinstance(choices[0], dict) else {}
    ended = x.started_at + timedelta(seconds=x.latency_s or 0.0)
    return RequestRow(
        request_id=x.request_id,
        schema_version=ROW_SCHEMA_VERSION,
        started_at=x.started_at.replace(tzinfo=None),
        ended_at=ended.replace(tzinfo=None),
        route=x.route.name,
        task=x.task,
        session_hash=x.session_hash,
        served_by=x.served_by,
        teacher=x.route.teacher,
        upstream_model=_str(response.get("model")) if isinstance(response, dict) else None,
        prompt_fingerprint=prompt_fingerprint((x.chat or x.payload).get("messages")),
        request=request,
        response=_stored(x, response, redactor),
        status=x.status,
        outcome=x.outcome,
        error=x.error,
        finish_reason=_finish_reason(x.endpoint, response, first),
        truncated=truncated,
        latency_ms=None if x.latency_s is None else x.latency_s * 1000,
        ttft_ms=None if x.ttft_s is None else x.ttft_s * 1000,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        total_tokens=None if prompt_tokens is None else prompt_tokens + (completion_tokens or 0),
        usage_estimated=estimated,
        cost_usd=cost,
        stream=x.stream,
        tags=orjson.dumps(x.tags).decode() if x.tags else None,
        key_id=x.key_id,
        teacher_logprobs=_logprobs(choices) if x.endpoint == CHAT else None,
        shadow_pair_id=x.shadow_pair_id,
        endpoint=x.endpoint,
    )


_RAW = object()  # key of an answer that is not a JSON object: its bytes, kept as text


def parsed_answer(exchange: Exchange) -> dict[str, Any] | None:
    """The answer as JSON in the surface's own shape (a stream reassembled), or None."""
    response = _response(exchange)[0]
    return response if isinstance(response, dict) and _RAW not in response else None


def _stored(x: Exchange, response: Any, redactor: Redactor | None) -> str | None:
    """The answer as the row keeps it, redacted once more as a whole: a stream's events were
    redacted one by one, and its reassembled text is checked again here."""
    stored = _kept(x, response)
    return stored if stored is None or redactor is None else redactor.document_text(stored)


def _kept(x: Exchange, response: Any) -> str | None:
    """The answer as the row keeps it. A JSON body is kept as it came (already redacted, and
    never re-serialised: that costs time and fails on very deep JSON); a reassembled stream as
    its JSON; a body that is not a JSON object as {"raw": its text}."""
    if response is None:
        return None
    raw = response.get(_RAW)
    if raw is not None:
        return orjson.dumps({"raw": raw.decode("utf-8", "replace")}).decode()
    if x.stream and x.status == 200:
        return orjson.dumps(response).decode()
    return (x.response_body or b"").decode("utf-8", "replace")


def _response(x: Exchange) -> tuple[Any, bool, str | None]:
    """(the answer as JSON, truncated, the error event of a stream)."""
    if not x.stream or x.status != 200:
        if not x.response_body:
            return None, False, None
        try:
            parsed = orjson.loads(x.response_body)
        except orjson.JSONDecodeError:
            return {_RAW: x.response_body}, False, None
        return (parsed if isinstance(parsed, dict) else {_RAW: x.response_body}), False, None
    try:
        result = REASSEMBLE.get(x.endpoint, reassemble)(x.chunks)
    except Exception:  # an odd stream must not cost its row: keep the bytes, say so
        return {_RAW: b"".join(x.chunks)}, True, "the stream could not be reassembled"
    error = None if result.error is None else orjson.dumps(result.error).decode()
    return result.response, not result.done, error


REASSEMBLE = {
    CHAT: reassemble,
    RESPONSES: reassemble_responses,
    MESSAGES: reassemble_messages,
    COMPLETIONS: reassemble_completions,
}
# Where each surface reports its token counts.
_USAGE_KEYS = {
    RESPONSES: ("input_tokens", "output_tokens"),
    MESSAGES: ("input_tokens", "output_tokens"),
}


def _usage(endpoint: str, response: Any) -> tuple[int | None, int | None]:
    usage = response.get("usage") if isinstance(response, dict) else None
    if not isinstance(usage, dict):
        return None, None
    prompt_key, completion_key = _USAGE_KEYS.get(endpoint, ("prompt_tokens", "completion_tokens"))
    prompt = _int(usage.get(prompt_key))
    if endpoint not in PAIR_ENDPOINTS:  # embeddings and the like produce no completion
        return prompt, 0 if prompt is not None else None
    return prompt, _int(usage.get(completion_key))


def _finish_reason(endpoint: str, response: Any, first: Any) -> str | None:
    """Why the answer ended, in the surface's own words."""
    if not isinstance(response, dict):
        return None
    if endpoint == RESPONSES:
        return _str(response.get("status"))
    if endpoint == MESSAGES:
        return _str(response.get("stop_reason"))
    return _str(first.get("finish_reason")) if isinstance(first, dict) else None


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


def _int(value: Any) -> int | None:
    # A teacher's usage of the wrong type must not cost the row its batch.
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _logprobs(choices: list[Any]) -> str | None:
    found = [c.get("logprobs") for c in choices if isinstance(c, dict) and c.get("logprobs")]
    return orjson.dumps(found[0] if len(found) == 1 else found).decode() if found else None


def _estimate_tokens(x: Exchange, response: Any) -> tuple[int, int]:
    # The teacher sent no usage (a stream without include_usage): about 4 characters a token,
    # marked as estimated in the row.
    messages = (x.chat or x.payload).get("messages")
    prompt = len(orjson.dumps(messages)) if isinstance(messages, list) else len(x.request_body)
    if x.endpoint != CHAT:
        return max(1, prompt // 4), max(0, len(orjson.dumps(response, default=str)) // 4)
    choices = _list(response.get("choices")) if isinstance(response, dict) else []
    answer = sum(len(orjson.dumps(c.get("message") or {})) for c in choices if isinstance(c, dict))
    return max(1, prompt // 4), max(0, answer // 4)
