"""Rows built from finished exchanges: what the teacher sent, in the row's declared types."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson

from logbook.settings import LogbookSettings
from logbook.writer import Logbook
from monitoring.metrics import Metrics
from proxy.accounting import Pricer
from proxy.exchange import Exchange, build_row, now_utc
from proxy.settings import RouteSettings

ROUTE = RouteSettings(name="r", teacher="openai/x", input_cost_per_mtok=1, output_cost_per_mtok=2)
PAYLOAD = {"model": "r", "messages": [{"role": "system", "content": "Be brief."},
                                      {"role": "user", "content": "hi"}]}  # fmt: skip


def exchange(response: object, stream: bool = False) -> Exchange:
    x = Exchange(
        request_id="req_1", route=ROUTE, started_at=now_utc(), payload=PAYLOAD,
        request_body=orjson.dumps(PAYLOAD), stream=stream, status=200, latency_s=0.5,
    )  # fmt: skip
    if stream:
        x.chunks = [b"data: " + orjson.dumps(c) + b"\n\n" for c in response]  # type: ignore[attr-defined]
    else:
        x.response_body = orjson.dumps(response)
    return x


def test_a_plain_answer_becomes_a_priced_row() -> None:
    answer = {"model": "x-1", "choices": [{"index": 0, "finish_reason": "stop",
              "message": {"role": "assistant", "content": "hello"}}],
              "usage": {"prompt_tokens": 10, "completion_tokens": 3}}  # fmt: skip
    row = build_row(exchange(answer), Pricer.load([ROUTE]))
    assert (row.upstream_model, row.finish_reason, row.truncated) == ("x-1", "stop", False)
    assert (row.prompt_tokens, row.completion_tokens, row.total_tokens) == (10, 3, 13)
    assert row.cost_usd == (10 * 1 + 3 * 2) / 1e6 and not row.usage_estimated
    assert row.latency_ms == 500 and row.route == "r" and row.teacher == "openai/x"
    assert row.prompt_fingerprint is not None and len(row.prompt_fingerprint) == 16


def test_odd_types_from_a_teacher_never_cost_the_row(tmp_path: Path) -> None:
    answer = {"model": 7, "choices": [{"finish_reason": 3, "message": {"content": "ok"}}, "junk"],
              "usage": {"prompt_tokens": "ten", "completion_tokens": True}}  # fmt: skip
    row = build_row(exchange(answer), Pricer.load([ROUTE]))
    assert row.upstream_model is None and row.finish_reason is None
    assert row.usage_estimated and isinstance(row.prompt_tokens, int)

    async def store() -> int:
        logbook = Logbook(tmp_path, LogbookSettings(), Metrics())
        await logbook.open(background=False)
        logbook.submit(row)
        await logbook.flush()
        written = logbook.metrics.capture_rows.labels("requests")._value.get()
        await logbook.close()
        return int(written)

    assert asyncio.run(store()) == 1  # the batch was written, nothing spilled


def test_a_stream_is_reassembled_and_its_error_event_marks_the_row() -> None:
    chunks = [
        {
            "model": "x-1",
            "choices": [{"index": 0, "delta": {"role": "assistant", "content": "he"}}],
        },
        {"error": {"message": "overloaded", "type": "server_error"}},
    ]
    x = exchange(chunks, stream=True)
    row = build_row(x, Pricer.load([ROUTE]))
    assert row.truncated and row.outcome == "upstream_error" and "overloaded" in (row.error or "")
    assert orjson.loads(row.response or "{}")["choices"][0]["message"]["content"] == "he"
