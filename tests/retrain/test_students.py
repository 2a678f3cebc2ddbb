"""The student contract: registry layout and listing, statuses, and the prompt and agreement
measures that training and serving share."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from retrain import registry, students


def _publish(data_dir: Path, route: str, status: str, exact: float) -> Path:
    version, staging = registry.allocate(data_dir, route)
    manifest = {
        "version": version,
        "route": route,
        "status": status,
        "created_at": "2026-01-01T00:00:00",
        "base": "tiny",
        "base_path": str(students.base_dir(data_dir, route)),
        "method": "lora",
        "dataset_version": 1,
        "metrics": {"student": {"exact_match": exact}},
        "gate": {"passed": status != students.REJECTED, "reasons": []},
    }
    students.write_json(staging / "manifest.json", manifest)
    students.write_json(staging / "eval.json", {"worst": []})
    return registry.publish(staging)


def test_versions_increase_and_staging_is_hidden(tmp_path: Path) -> None:
    first = _publish(tmp_path, "r", students.CANDIDATE, 0.9)
    version, staging = registry.allocate(tmp_path, "r")  # a run in progress
    assert first.name == "v1" and version == 2 and staging.name == ".v2.staging"
    assert [s.version for s in students.list_students(tmp_path, "r")] == [1]
    assert registry.allocate(tmp_path, "r")[0] == 3  # never reuses a reserved number


def test_list_and_show(tmp_path: Path) -> None:
    _publish(tmp_path, "a", students.CANDIDATE, 0.95)
    _publish(tmp_path, "b", students.REJECTED, 0.5)
    listed = students.list_students(tmp_path)
    assert [(s.route, s.version, s.status) for s in listed] == [
        ("a", 1, "candidate"),
        ("b", 1, "rejected"),
    ]
    assert listed[0].exact_match == 0.95 and listed[0].gate_passed and listed[0].name == "v1"
    json.dumps([s.as_dict() for s in listed])  # the CLI's --json output
    shown = students.show_student(tmp_path, "a", 1)
    assert shown["manifest"]["status"] == "candidate" and shown["eval"] == {"worst": []}
    assert shown["status"] == "candidate"
    with pytest.raises(FileNotFoundError, match="apprentice students list"):
        students.show_student(tmp_path, "a", 7)
    assert students.list_students(tmp_path / "nowhere") == []


def test_the_current_student_is_the_promoted_one_or_none(tmp_path: Path) -> None:
    assert students.current_student(tmp_path, "r") is None
    _publish(tmp_path, "r", students.CANDIDATE, 0.9)
    _publish(tmp_path, "r", students.CANDIDATE, 0.92)
    _publish(tmp_path, "r", students.REJECTED, 0.1)
    assert students.current_student(tmp_path, "r") is None  # candidates serve nobody yet
    students.set_status(tmp_path, "r", 1, students.PROMOTED, "checks_passed")
    students.set_status(tmp_path, "r", 2, students.ROLLED_BACK, "agreement")
    current = students.current_student(tmp_path, "r")
    assert current is not None and current.version == 1
    assert [s.status for s in students.list_students(tmp_path, "r")] == [
        "promoted", "rolled_back", "rejected"
    ]  # fmt: skip
    record = json.loads((tmp_path / "students" / "r" / "v2" / "status.json").read_text())
    assert record["status"] == "rolled_back" and record["reason"] == "agreement"
    assert (
        json.loads((tmp_path / "students" / "r" / "v2" / "manifest.json").read_text())["status"]
        == "candidate"
    )  # the manifest keeps the gate's verdict


def test_a_rejected_student_stays_rejected_and_statuses_are_checked(tmp_path: Path) -> None:
    _publish(tmp_path, "r", students.REJECTED, 0.1)
    students.set_status(tmp_path, "r", 1, students.PROMOTED)
    assert students.list_students(tmp_path, "r")[0].status == "rejected"
    with pytest.raises(ValueError, match="unknown student status"):
        students.set_status(tmp_path, "r", 1, "famous")
    with pytest.raises(FileNotFoundError, match="No student v9"):
        students.set_status(tmp_path, "r", 9, students.PROMOTED)


def test_chat_messages_become_a_prompt_of_text() -> None:
    prompt = students.Prompt.from_chat(
        [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "Hi "},
                                         {"type": "image_url", "image_url": {"url": "x"}},
                                         {"type": "text", "text": "there"}]},
            {"role": "assistant", "content": None},
        ]
    )  # fmt: skip
    assert [m["content"] for m in prompt.messages] == ["Be brief.", "Hi there", ""]
    assert prompt.tools is None


def test_exact_match_ignores_whitespace_and_json_key_order() -> None:
    assert students.exact_match('{"b": 1, "a": [1, 2]}', ' {"a":[1,2],\n "b":1} ')
    assert students.exact_match("hello   world\n", "hello world")
    assert not students.exact_match('{"a": 1}', '{"a": 2}')
    assert not students.exact_match("Hello", "hello")


def test_normalise_leaves_non_json_text_alone() -> None:
    assert students.normalise("  {not json ") == "{not json"
    assert students.parse_json("[1, 2") is None
    assert students.parse_json("42") is None  # only objects and arrays count as JSON answers


def test_token_f1() -> None:
    assert students.token_f1("a b c", "a b c") == 1.0
    assert students.token_f1("x y", "a b") == 0.0
    # pred {a, b}, ref {a, c, d}: precision 1/2, recall 1/3 -> F1 0.4
    assert students.token_f1("a b", "a c d") == pytest.approx(0.4)


def test_value_ranges_cover_json_values_not_keys() -> None:
    from retrain.students import value_ranges

    text = '{"intent": "refund", "n": 12, "ok": true, "tags": ["a", ""], "x": null}'
    assert [text[a:b] for a, b in value_ranges(text)] == [
        "refund", "12", "true", "a", '""', "null"]  # fmt: skip
    assert value_ranges("plain text") == []


def test_confidence_signals_single_out_the_value_tokens() -> None:
    import math

    from retrain.students import confidence_signals

    tokens = ['{"', "intent", '":', ' "', "ref", "und", '"}']
    logprobs = [-0.01, -0.01, -0.01, -0.01, -0.9, -0.3, -0.01]
    signals = confidence_signals(tokens, logprobs)
    assert signals["min_logprob"] == -0.9
    assert signals["value_min_logprob"] == -0.9
    assert signals["value_mean_logprob"] == pytest.approx(-0.6)
    assert signals["mean_logprob"] == pytest.approx(sum(logprobs) / 7)
    plain = confidence_signals(["hi", " there"], [-0.5, -0.1])
    assert plain["value_mean_logprob"] == plain["mean_logprob"] == pytest.approx(-0.3)
    assert set(confidence_signals([], []).values()) == {-math.inf}


def test_read_cascade_reads_the_rule_and_its_prediction(tmp_path: Path) -> None:
    import math

    from retrain.students import CascadeRule, read_cascade

    assert read_cascade(tmp_path) is None
    cascade = {"signal": "value_min_logprob", "threshold": -0.2, "coverage": 0.8,
               "agreement": 0.98}  # fmt: skip
    (tmp_path / "eval.json").write_text(json.dumps({"cascade": cascade}))
    rule = read_cascade(tmp_path)
    assert rule == CascadeRule("value_min_logprob", -0.2, 0.8, 0.98)
    assert rule.serves({"value_min_logprob": -0.2}) and not rule.serves({"min_logprob": 0.0})
    (tmp_path / "eval.json").write_text(json.dumps({"cascade": cascade | {"threshold": None}}))
    assert read_cascade(tmp_path).threshold == math.inf  # type: ignore[union-attr]


def test_a_refused_student_says_why_and_the_next_run_trains_more(tmp_path: Path) -> None:
    from retrain.job import escalated
    from retrain.settings import RetrainSettings

    assert students.retrain_verdict(tmp_path, "r") is None  # no student yet
    _publish(tmp_path, "r", students.CANDIDATE, 0.95)
    assert students.retrain_verdict(tmp_path, "r") is None  # the newest passed
    for _ in range(3):
        path = _publish(tmp_path, "r", students.REJECTED, 0.5)
        manifest = students.read_manifest(path)
        manifest["gate"]["reasons"] = ["novel exact_match 0.40 < 0.9"]
        students.write_json(path / "manifest.json", manifest)
    verdict = students.retrain_verdict(tmp_path, "r")
    assert verdict is not None and verdict["version"] == "v4"
    assert verdict["reasons"] == ["novel exact_match 0.40 < 0.9"]
    assert verdict["rejected_in_a_row"] == students.rejected_in_a_row(tmp_path, "r") == 3
    shown = students.show_student(tmp_path, "r", 4)
    assert shown["verdict"] == {"passed": False, "reasons": ["novel exact_match 0.40 < 0.9"]}
    settings = RetrainSettings(max_steps=500)
    assert escalated(settings, 0) is settings
    assert escalated(settings, 1).max_steps == 1000
    assert escalated(settings, 3).max_steps == escalated(settings, 9).max_steps == 1500
