"""`apprentice canary ...` against a running server, through its admin API."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from apprentice.cli import app
from tests.conftest import ADMIN_TOKEN, RunningProxy, proxy_config
from tests.fakes.teacher import FakeTeacher


def register(data_dir: Path, version: int, status: str) -> None:
    """A registered student as the registry sees it (the canary controls never load it)."""
    folder = data_dir / "students" / "triage" / f"v{version}"
    folder.mkdir(parents=True)
    manifest = {"status": status, "metrics": {"student": {"exact_match": 0.1}}}
    (folder / "manifest.json").write_text(json.dumps(manifest))


@pytest.fixture
def toml(tmp_path: Path, teacher: FakeTeacher) -> Iterator[tuple[Path, RunningProxy]]:
    data_dir = tmp_path / "data"
    register(data_dir, 1, "candidate")
    register(data_dir, 2, "rejected")
    with RunningProxy(proxy_config(data_dir, teacher)) as running:
        path = tmp_path / "apprentice.toml"
        path.write_text(
            f'data_dir = "{data_dir}"\n'
            f'[server]\nport = {running.port}\nadmin_token = "{ADMIN_TOKEN}"\n'
            '[[routes]]\nname = "triage"\nteacher = "openai/x"\n'
        )
        yield path, running


def canary(config: Path, *args: str) -> Result:
    return CliRunner().invoke(app, ["canary", *args, "--config", str(config)])


def listed_statuses(config: Path) -> dict[str, str]:
    """`apprentice students list --json`: version -> status."""
    result = CliRunner().invoke(app, ["students", "list", "--json", "--config", str(config)])
    assert result.exit_code == 0, result.output
    return {f"v{s['version']}": s["status"] for s in json.loads(result.stdout)}


def first_line(result: Result) -> str:
    assert result.exit_code == 0, result.output
    return result.stdout.splitlines()[0]


def test_canary_commands_move_the_route_and_print_its_new_state(
    toml: tuple[Path, RunningProxy],
) -> None:
    config, running = toml
    status = canary(config, "status", "--json")
    assert status.exit_code == 0, status.output
    route = json.loads(status.stdout)["routes"]["triage"]
    assert (route["state"], route["weights"], route["history"]) == ("idle", {}, [])

    steps = [
        (("start", "triage", "v1"), "triage: shadow, candidate v1, current -, traffic teacher"),
        (
            ("set-weight", "triage", "v1", "30"),
            "triage: canary step 1, candidate v1, current -, traffic v1: 30%",
        ),
        (("pause", "triage"), "triage: paused step 1, candidate v1, current -, traffic v1: 30%"),
        (("resume", "triage"), "triage: canary step 1, candidate v1, current -, traffic v1: 30%"),
        (("promote", "triage"), "triage: promoted, candidate v1, current v1, traffic v1: 100%"),
        (
            ("rollback", "triage", "--reason", "answers look wrong"),
            "triage: rolled_back, candidate v1, current -, traffic teacher",
        ),
    ]
    # What `students list` says after each move: the canary loop writes it before answering.
    registry_after = {
        "start": "shadow", "set-weight": "canary", "pause": "canary", "resume": "canary",
        "promote": "promoted", "rollback": "rolled_back",
    }  # fmt: skip
    assert listed_statuses(config) == {"v1": "candidate", "v2": "rejected"}
    for args, expected in steps:
        result = canary(config, *args)
        assert first_line(result) == expected, (args, result.output)
        assert "(manual)" in result.stdout.splitlines()[-1]  # the move, last in the history
        assert listed_statuses(config) == {"v1": registry_after[args[0]], "v2": "rejected"}

    # The server agrees with what the CLI printed, and the plain status shows the history.
    snap = running.app.state.canary.controllers["triage"].snapshot()
    assert (snap["state"], snap["weight"], snap["current"]) == ("rolled_back", 0, None)
    status = canary(config, "status", "--json")
    history = json.loads(status.stdout)["routes"]["triage"]["history"]
    assert [(t["to_state"], t["reason"]) for t in history] == [
        ("shadow", "manual"),
        ("canary", "manual"),
        ("paused", "manual"),
        ("canary", "manual"),
        ("promoted", "manual"),
        ("rolled_back", "manual"),
    ]
    assert history[-1]["detail"] == "answers look wrong"
    plain = canary(config, "status")
    assert first_line(plain).startswith("triage: rolled_back, candidate v1")
    assert "promoted -> rolled_back (manual): answers look wrong" in plain.stdout


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("start", "nope", "v1"), 1, "error: Unknown route 'nope'; routes: triage."),
        (
            ("start", "triage", "v9"),
            1,
            "error: Route 'triage' has no registered student v9; `apprentice students list` "
            "shows them.",
        ),
        (
            ("set-weight", "triage", "v1", "150"),
            2,
            "error: the weight must be between 0 and 100, not 150.",
        ),
        (
            ("set-weight", "triage", "v2", "10"),
            1,
            "error: Student v2 of route 'triage' was rejected by its gate (exact match 0.1); "
            "it cannot take traffic.",
        ),
        (("resume", "triage"), 1, "error: Route 'triage' is idle; there is nothing to resume."),
        (("promote", "nope"), 1, "error: Unknown route 'nope'; routes: triage."),
    ],
)
def test_bad_arguments_fail_with_one_clear_sentence(
    toml: tuple[Path, RunningProxy], args: tuple[str, ...], code: int, message: str
) -> None:
    config, running = toml
    result = canary(config, *args)
    assert result.exit_code == code, result.output
    assert result.stderr.strip() == message
    assert result.stdout == ""
    assert running.app.state.canary.controllers["triage"].state == "idle"


def test_no_server_is_one_clear_sentence(toml: tuple[Path, RunningProxy]) -> None:
    config, running = toml
    running.stop()
    result = canary(config, "status")
    assert result.exit_code == 1
    url = f"http://127.0.0.1:{running.port}/admin/canary"
    assert (
        result.stderr.strip()
        == f"error: no apprentice server answers at {url}; is `serve` running?"
    )


def test_a_refused_newest_student_shows_in_the_canary_status(
    toml: tuple[Path, RunningProxy],
) -> None:
    config, _ = toml
    status = canary(config, "status", "--json")
    assert status.exit_code == 0, status.output
    refused = json.loads(status.stdout)["routes"]["triage"]["retrain"]
    assert refused["version"] == "v2" and refused["rejected_in_a_row"] == 1
    assert "more steps" in refused["next"]
    text = canary(config, "status")
    assert "newest student v2 refused by the gate" in text.stdout
