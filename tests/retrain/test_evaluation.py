from __future__ import annotations

import json

import pytest

from retrain.evaluation import canonical_tool_calls, score
from tests.retrain.triage_task import make_row


def test_tool_calls_compare_by_name_and_parsed_arguments() -> None:
    openai_shape = [
        {
            "id": "1",
            "type": "function",
            "function": {"name": "lookup", "arguments": '{"id": 7, "x": "y"}'},
        }
    ]
    bare = [{"name": "lookup", "arguments": {"x": "y", "id": 7}}]
    assert canonical_tool_calls(openai_shape) == canonical_tool_calls(bare)
    assert canonical_tool_calls([{"name": "other", "arguments": {}}]) != canonical_tool_calls(bare)
    assert canonical_tool_calls(None) is None


def test_score_reports_every_metric() -> None:
    rows = [
        make_row(0, "refund 12", {"intent": "refund", "priority": "medium"}),
        make_row(1, "late 13", {"intent": "shipping_delay", "priority": "medium"}),
    ]
    calls = [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]
    rows.append(
        {
            **make_row(2, "call f", {"intent": "x", "priority": "y"}),
            "answer": json.dumps({"role": "assistant", "content": None, "tool_calls": calls}),
            "answer_text": json.dumps(calls),
        }
    )
    preds = [
        '{"priority": "medium", "intent": "refund"}',  # exact after key sorting
        "not json at all",
        '[{"name": "f", "arguments": {}}]',
    ]
    report = score(rows, preds, latencies_ms=[10.0, 20.0, 30.0])
    m = report.metrics
    assert m["exact_match"] == pytest.approx(1 / 3)  # the tool call text differs from OpenAI's
    assert m["json_valid"] == pytest.approx(2 / 3)
    assert m["tool_call_match"] == 1.0
    assert m["latency_p50_ms"] == pytest.approx(20.0)
    assert m["latency_p95_ms"] == pytest.approx(29.0)
    worst = report.worst(20)
    assert worst[0]["prompt"] == "late 13"
    keys = {"prompt", "teacher", "student", "token_f1", "slice", "signals"}
    assert all(set(w) == keys for w in worst)
