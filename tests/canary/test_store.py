"""Canary snapshots and transitions in a real logbook file, and a controller across a restart."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
from prometheus_client import CollectorRegistry

from canary.controller import CanaryController, Transition
from canary.settings import CanarySettings
from canary.store import append_transition, history, load_snapshots, save_snapshot
from logbook.migrations import migrate
from monitoring.metrics import Metrics
from tests.canary.test_controller import GOOD, FakeClock

SETTINGS = CanarySettings()


def open_logbook(path: Path) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(str(path))
    migrate(con)
    return con


def persisted(con: duckdb.DuckDBPyConnection, ctl: CanaryController) -> CanaryController:
    """Wire `ctl` the way the server does: every transition stored with the new snapshot."""

    def store(c: CanaryController, t: Transition) -> None:
        append_transition(con, c.route, t)
        save_snapshot(con, c.route, c.snapshot())

    ctl.on_transition = store
    return ctl


@pytest.fixture
def con(tmp_path: Path) -> duckdb.DuckDBPyConnection:
    return open_logbook(tmp_path / "logbook.duckdb")


def test_snapshots_are_replaced_per_route(con: duckdb.DuckDBPyConnection) -> None:
    assert load_snapshots(con) == {}
    save_snapshot(con, "a", {"state": "shadow"})
    save_snapshot(con, "b", {"state": "idle"})
    save_snapshot(con, "a", {"state": "canary", "history": [{"at": 1.5}]})
    assert load_snapshots(con) == {
        "a": {"state": "canary", "history": [{"at": 1.5}]},
        "b": {"state": "idle"},
    }


def test_history_keeps_every_transition_in_order(con: duckdb.DuckDBPyConnection) -> None:
    clock = FakeClock()
    ctl = persisted(con, CanaryController("r", SETTINGS, clock=clock))
    ctl.start("v1")
    clock.now += 60
    ctl.evaluate(GOOD)  # same tick as the rollback below: seq keeps them in order
    ctl.rollback("broken JSON", reason="manual")
    CanaryController("other", SETTINGS, clock=clock, on_transition=ctl.on_transition).start("x")
    stored = history(con, "r")
    assert stored == ctl.history
    assert [t.to_state for t in stored] == ["shadow", "canary", "rolled_back"]
    assert stored[1].checks[0].name == "agreement" and stored[1].checks[0].value == 0.95
    assert history(con, "r", limit=1) == ctl.history[-1:]
    assert [t.version for t in history(con, "other")] == ["x"]


def test_a_restarted_controller_continues_identically(tmp_path: Path) -> None:
    path, clock = tmp_path / "logbook.duckdb", FakeClock()
    twin = CanaryController("r", SETTINGS, clock=clock)  # never restarts
    con = open_logbook(path)
    ctl = persisted(con, CanaryController("r", SETTINGS, clock=clock))
    for c in (ctl, twin):
        c.start("v1")
    for _ in range(2):
        clock.now += 60
        assert ctl.evaluate(GOOD).action == twin.evaluate(GOOD).action == "advance"
    con.close()

    con = open_logbook(path)  # migrate again is a no-op on an up-to-date file
    metrics = Metrics(CollectorRegistry())
    snapshot = load_snapshots(con)["r"]
    restored = CanaryController.from_snapshot(snapshot, SETTINGS, clock=clock, metrics=metrics)
    persisted(con, restored)
    assert (restored.state, restored.weight(), restored.step) == ("canary", 25, 1)
    labels = {"route": "r"}
    assert metrics.registry.get_sample_value("apprentice_canary_weight_ratio", labels) == 0.25
    for _ in range(3):
        clock.now += 60
        assert restored.evaluate(GOOD).action == twin.evaluate(GOOD).action == "advance"
    assert restored.state == "promoted"
    assert restored.snapshot() == twin.snapshot()
    assert history(con, "r") == twin.history
    assert load_snapshots(con)["r"] == twin.snapshot()
