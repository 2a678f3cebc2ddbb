"""Canary loops of two replicas on one control plane (SQLite, as `serve --workers` shares it):
one leads, both follow every change, the leader judges both replicas' traffic together."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from canary.controller import CanaryController, Transition
from canary.loop import LEASE, CanaryLoop
from cluster.control import open_control
from monitoring.drift_monitor import DriftMonitor
from monitoring.metrics import Metrics
from monitoring.settings import DriftSettings
from proxy.routing import Traffic
from tests.canary.test_controller import FakeClock
from tests.canary.test_loop import FAST, register, statuses


class Replica:
    def __init__(self, shared: Path, name: str, clock: FakeClock) -> None:
        self.control = open_control(str(shared / "control.sqlite3"), name)
        self.metrics = Metrics(CollectorRegistry())
        self.traffic = Traffic(["r"])
        self.loop = CanaryLoop(
            shared, {"r": FAST}, control=self.control, traffic=self.traffic,
            drift=DriftMonitor(self.metrics, {"r": DriftSettings()}, clock=clock),
            metrics=self.metrics, clock=clock, lease_ttl_s=5.0,
        )  # fmt: skip

    def serve(self, n: int, agree: bool = True) -> None:
        counters = self.traffic["r"]
        for _ in range(n):
            counters.served(True, True, 0.01)
            counters.served(False, True, 0.02)
            counters.compared("agree" if agree else "disagree")

    def state(self) -> str:
        return self.loop.controllers["r"].state


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[tuple[Replica, Replica, FakeClock]]:
    clock = FakeClock()
    a, b = Replica(tmp_path, "a", clock), Replica(tmp_path, "b", clock)
    await a.loop.open()
    await b.loop.open()
    await a.loop.tick()  # a takes the lease first
    await b.loop.tick()
    yield a, b, clock
    a.control.close()
    b.control.close()


async def test_exactly_one_replica_leads_and_the_other_takes_over_when_it_steps_down(
    pair: tuple[Replica, Replica, FakeClock],
) -> None:
    a, b, _ = pair
    assert a.loop.leading and not b.loop.leading
    assert a.control.lease(LEASE).holder == "a"  # type: ignore[union-attr]
    await a.loop.step_down()
    await b.loop.tick()
    assert b.loop.leading and not a.loop.leading
    await a.loop.tick()
    assert not a.loop.leading  # b's lease stands


async def test_a_weight_set_through_one_replica_is_followed_by_the_other_at_its_next_tick(
    pair: tuple[Replica, Replica, FakeClock], tmp_path: Path
) -> None:
    a, b, _ = pair
    register(tmp_path, 1)
    await b.loop.set_weight("r", "v1", 30)  # through the replica that does not lead
    assert b.loop.controllers["r"].weights() == {"v1": 30.0}
    assert a.loop.controllers["r"].weights() == {}  # a has not looked yet
    await a.loop.tick()
    assert a.loop.controllers["r"].weights() == {"v1": 30.0}
    assert statuses(tmp_path) == {"v1": "canary"}


async def test_the_leader_judges_the_sum_of_both_replicas_traffic(
    pair: tuple[Replica, Replica, FakeClock], tmp_path: Path
) -> None:
    a, b, clock = pair
    register(tmp_path, 1)
    await a.loop.tick()  # discovered: shadow
    assert a.state() == "shadow"
    await b.loop.tick()
    # min_requests is 5 a side: each replica alone counts 3, together 6.
    a.serve(3)
    b.serve(3)
    await b.loop.tick()  # b publishes its counts; it does not judge
    assert b.state() == "shadow"
    clock.now += 10
    await a.loop.tick()
    assert a.state() == "canary", a.loop.controllers["r"].last_decision
    await b.loop.tick()
    assert b.state() == "canary"


async def test_too_little_traffic_on_one_replica_alone_holds(
    pair: tuple[Replica, Replica, FakeClock], tmp_path: Path
) -> None:
    a, _, clock = pair
    register(tmp_path, 1)
    await a.loop.tick()
    a.serve(3)
    clock.now += 10
    await a.loop.tick()
    assert a.state() == "shadow"
    assert a.loop.controllers["r"].last_decision.action == "hold"  # type: ignore[union-attr]


async def test_a_stale_replica_re_reads_before_its_control_and_nothing_is_lost(
    pair: tuple[Replica, Replica, FakeClock], tmp_path: Path
) -> None:
    a, b, _ = pair
    register(tmp_path, 1)
    await a.loop.set_weight("r", "v1", 20)
    # b has not ticked: its controller is idle. Its control reads the stored state first.
    await b.loop.command("r", lambda ctl: ctl.pause())
    await a.loop.tick()
    history = [t.to_state for t in a.loop.controllers["r"].history]
    assert history[-2:] == ["canary", "paused"]
    stored = a.control.history("r")
    assert [t["to_state"] for t in stored][-2:] == ["canary", "paused"]


async def test_a_conflicting_write_loses_cleanly_and_adopts_the_winner(
    pair: tuple[Replica, Replica, FakeClock], tmp_path: Path
) -> None:
    a, b, _ = pair
    register(tmp_path, 1)
    await a.loop.set_weight("r", "v1", 20)
    # b acts on its stale (idle) controller without reading first, as a tick could.
    b.loop.controllers["r"].start("v1", force=True)
    await b.loop.persist()
    await b.loop.tick()  # b re-reads: a's write won
    assert b.loop.controllers["r"].weights() == {"v1": 20.0}
    assert [t["to_state"] for t in a.control.history("r")] == ["canary"]


async def test_state_kept_in_a_logbook_before_the_control_plane_is_imported_once(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    old = Transition(at=1.0, from_state="idle", to_state="shadow", version="v1", step=0,
                     weight=0, reason="manual", detail="", checks=())  # fmt: skip
    first = Replica(tmp_path, "a", clock)
    ctl = CanaryController("r", FAST, clock=clock)  # what the logbook's snapshot says
    ctl.start("v1", force=True)
    imported = {"r": (ctl.snapshot(), [old])}
    await first.loop.open(imported)
    assert first.state() == "shadow"
    assert [t["to_state"] for t in first.control.history("r")] == ["shadow"]
    first.control.close()
    again = Replica(tmp_path, "b", clock)
    changed = CanaryController("r", FAST, clock=clock)
    await again.loop.open({"r": (changed.snapshot(), [])})  # the control plane's copy wins
    assert again.state() == "shadow"
    again.control.close()


async def test_the_cluster_view_drops_stale_replicas_and_shows_one_leader(
    pair: tuple[Replica, Replica, FakeClock],
) -> None:
    a, b, _ = pair
    await a.loop.step_down()
    await b.loop.tick()  # b takes the lease; a's last heartbeat still says it led
    view = a.loop.cluster()
    assert view["leader"] == "b" and not view["leading"]
    leaders = [r["replica"] for r in view["replicas"] if r["info"]["leader"]]
    assert leaders == ["b"]
    # A replica silent for longer than the lease (6 s > 5 s) is gone from the view.
    a.control._db.write(  # its heartbeat, aged at the database's own clock
        lambda tx: tx.execute("UPDATE replicas SET seen_at = seen_at - 6 WHERE replica = ?", ("a",))
    )
    assert [r["replica"] for r in b.loop.cluster()["replicas"]] == ["b"]
