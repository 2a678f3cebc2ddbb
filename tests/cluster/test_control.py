"""The control plane's behaviour, the same on SQLite and PostgreSQL (the `control_url`
fixture runs each test on both)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from cluster.control import ControlPlane, Versioned, open_control
from cluster.counters import sum_counters
from tests.cluster.polling import poll


@pytest.fixture
def other(control_url: str) -> Iterator[ControlPlane]:
    """A second replica's handle on the same database (its own connection)."""
    plane = open_control(control_url, "r2")
    yield plane
    plane.close()


# --- canary snapshots ---------------------------------------------------------------------


def test_a_snapshot_is_created_once_then_replaced_by_version(control: ControlPlane) -> None:
    assert control.versions() == {} and control.snapshots() == {}
    assert control.write_snapshot("triage", None, {"state": "shadow"}, []) == 1
    assert control.write_snapshot("triage", None, {"state": "other"}, []) is None
    assert control.write_snapshot("triage", 0, {"state": "other"}, []) is None
    assert control.write_snapshot("triage", 1, {"state": "canary", "step": 0}, []) == 2
    assert control.write_snapshot("triage", 1, {"state": "stale"}, []) is None
    assert control.write_snapshot("summaries", 0, {"state": "shadow"}, []) == 1

    assert control.versions() == {"triage": 2, "summaries": 1}
    snapshots = control.snapshots()
    assert snapshots["triage"].snapshot == {"state": "canary", "step": 0}
    assert snapshots["triage"].version == 2
    assert abs(snapshots["triage"].updated_at - time.time()) < 60  # the database's clock
    assert isinstance(snapshots["summaries"], Versioned)


def test_a_lost_compare_and_set_writes_no_transition(control: ControlPlane) -> None:
    assert control.write_snapshot("triage", None, {"n": 1}, [{"to": "shadow"}]) == 1
    assert control.write_snapshot("triage", None, {"n": 99}, [{"to": "lost"}]) is None
    assert control.write_snapshot("triage", 7, {"n": 99}, [{"to": "lost"}]) is None
    assert [t["to"] for t in control.history("triage")] == ["shadow"]
    assert control.snapshots()["triage"].snapshot == {"n": 1}


def test_two_writers_with_the_same_version_exactly_one_wins(
    control: ControlPlane, other: ControlPlane
) -> None:
    rounds = 15
    barrier = threading.Barrier(2)
    wins: dict[str, list[int]] = {"r1": [], "r2": []}
    errors: list[BaseException] = []

    def writer(plane: ControlPlane) -> None:
        try:
            for r in range(rounds):
                barrier.wait(10)
                # Both read the same version, then race to write on top of it.
                expected = plane.versions().get("triage")
                barrier.wait(10)
                got = plane.write_snapshot(
                    "triage", expected, {"round": r, "by": plane.replica},
                    [{"round": r, "by": plane.replica}, {"round": r, "by": plane.replica}],
                )  # fmt: skip
                if got is not None:
                    wins[plane.replica].append(r)
        except BaseException as exc:  # reported below; a thread cannot fail the test
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=writer, args=(p,)) for p in (control, other)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    # Exactly one winner each round: together the rounds, with no round won twice.
    assert sorted(wins["r1"] + wins["r2"]) == list(range(rounds))
    assert control.versions() == {"triage": rounds}
    winner = {r: who for who, won in wins.items() for r in won}
    history = control.history("triage")
    assert [(t["round"], t["by"]) for t in history] == [
        (r, winner[r]) for r in range(rounds) for _ in range(2)
    ]
    assert control.snapshots()["triage"].snapshot == {"round": rounds - 1, "by": winner[14]}


def test_history_is_oldest_first_with_its_seq_and_a_limit(control: ControlPlane) -> None:
    version = None
    for i in range(5):
        pair = [{"i": i, "half": 0}, {"i": i, "half": 1}]
        version = control.write_snapshot("triage", version, {"i": i}, pair)
        control.write_snapshot("noise", i or None, {}, [{"noise": i}])
    history = control.history("triage")
    assert [(t["i"], t["half"]) for t in history] == [(i, h) for i in range(5) for h in (0, 1)]
    seqs = [t["seq"] for t in history]
    assert seqs == sorted(seqs) and len(set(seqs)) == 10
    assert control.history("triage", limit=3) == history[-3:]
    assert control.history("triage", limit=100) == history
    assert control.history("triage", limit=0) == []
    assert control.history("missing") == []


def test_a_transition_comes_back_as_it_was_written(control: ControlPlane) -> None:
    transition = {"at": 1.5, "from_state": "shadow", "to_state": "canary", "version": "v3",
                  "step": 0, "weight": 5, "reason": "checks passed", "detail": "é ✓",
                  "checks": [{"name": "agreement", "value": 0.95, "ok": True}]}  # fmt: skip
    control.write_snapshot("triage", None, {"state": "canary"}, [transition])
    (got,) = control.history("triage")
    assert got.pop("seq") >= 1
    assert got == transition


# --- traffic counters ---------------------------------------------------------------------


def test_traffic_rows_from_every_replica_sum_and_prune(
    control: ControlPlane, other: ControlPlane
) -> None:
    control.publish_traffic("r1", 100.0, {"triage": {"requests": 3, "latency": [1, 2, 0]},
                                          "summaries": {"requests": 1}})  # fmt: skip
    other.publish_traffic("r2", 200.0, {"triage": {"requests": 4, "latency": [0, 1, 5]}})
    control.publish_traffic("r1", 300.0, {"triage": {"requests": 1, "latency": [1, 0, 0]}})
    control.publish_traffic("r1", 400.0, {})  # nothing to say: no row

    rows = control.traffic("triage", since=0)
    assert [(r["replica"], r["at"]) for r in rows] == [("r1", 100.0), ("r2", 200.0),
                                                       ("r1", 300.0)]  # fmt: skip
    assert all(r["route"] == "triage" for r in rows)
    assert sum_counters(r["counters"] for r in rows) == {"requests": 8, "latency": [2, 3, 5]}
    after = other.traffic("triage", since=150.0)
    assert sum_counters(r["counters"] for r in after) == {"requests": 5, "latency": [1, 1, 5]}
    assert control.traffic("summaries", since=0)[0]["counters"] == {"requests": 1}

    assert control.prune_traffic(before=250.0) == 3  # triage at 100 and 200, summaries at 100
    assert [r["at"] for r in control.traffic("triage", since=0)] == [300.0]
    assert control.traffic("summaries", since=0) == []


def test_traffic_without_a_time_is_stamped_by_the_database(control: ControlPlane) -> None:
    before = control.clock()
    control.publish_traffic("r1", None, {"triage": {"requests": 1}})
    after = control.clock()
    (row,) = control.traffic("triage", since=before - 1)
    assert before <= row["at"] <= after
    assert control.traffic("triage", since=after) == []


# --- the replica registry -----------------------------------------------------------------


def test_heartbeats_age_and_old_replicas_drop_out(
    control: ControlPlane, other: ControlPlane
) -> None:
    called = time.monotonic()
    control.heartbeat("r1", {"port": 8001})
    other.heartbeat("r2", {"port": 8002})
    control.heartbeat("r1", {"port": 8011})  # an upsert: one row, the latest info
    live = control.replicas(max_age_s=60)
    assert [(r["replica"], r["info"]) for r in live] == [("r1", {"port": 8011}),
                                                         ("r2", {"port": 8002})]  # fmt: skip
    assert all(0 <= r["age_s"] < 30 for r in live)

    # r2 keeps beating; r1 stops. Within a bounded poll r1 drops out of a 0.3 s window,
    # and never before 0.3 s have passed since its last heartbeat was sent.
    def r1_gone() -> bool:
        other.heartbeat("r2", {"port": 8002})
        names = [r["replica"] for r in control.replicas(max_age_s=0.3)]
        assert "r2" in names
        return "r1" not in names

    poll(r1_gone, "r1 to age out of the window", deadline_s=10)
    assert time.monotonic() - called >= 0.3
    aged = {r["replica"]: r["age_s"] for r in control.replicas(max_age_s=60)}
    assert aged["r1"] >= 0.3 > aged["r2"]


# --- the leader lease (one process; test_control_processes.py has the processes) -----------


def test_a_lease_is_held_by_one_renewed_and_released(
    control: ControlPlane, other: ControlPlane
) -> None:
    assert control.lease("leader") is None
    assert control.acquire_lease("leader", "r1", ttl_s=30)
    first = control.lease("leader")
    assert first is not None and first.holder == "r1"
    assert not other.acquire_lease("leader", "r2", ttl_s=30)
    assert other.lease("leader") == first

    assert control.acquire_lease("leader", "r1", ttl_s=60)  # a renewal moves the expiry
    renewed = other.lease("leader")
    assert renewed is not None and renewed.expires_at > first.expires_at + 20

    assert not other.release_lease("leader", "r2")  # not its lease: nothing happens
    assert other.lease("leader") == renewed
    assert control.release_lease("leader", "r1")
    assert other.lease("leader") is None
    assert other.acquire_lease("leader", "r2", ttl_s=30)  # at once, no ttl to wait out
    assert not control.acquire_lease("leader", "r1", ttl_s=30)
    assert control.acquire_lease("drift", "r1", ttl_s=30)  # leases are independent


def test_an_expired_lease_goes_to_the_next_caller_never_sooner(
    control: ControlPlane, other: ControlPlane
) -> None:
    ttl = 0.5
    called = time.monotonic()
    assert control.acquire_lease("leader", "r1", ttl_s=ttl)
    poll(lambda: other.acquire_lease("leader", "r2", ttl_s=30), "r2 to take the lease", 10)
    assert time.monotonic() - called >= ttl
    lease = control.lease("leader")
    assert lease is not None and lease.holder == "r2"
    assert not control.acquire_lease("leader", "r1", ttl_s=ttl)


def test_bad_arguments_are_refused(control: ControlPlane) -> None:
    with pytest.raises(ValueError, match="ttl_s"):
        control.acquire_lease("leader", "r1", ttl_s=0)
    with pytest.raises(ValueError, match="expected_version"):
        control.write_snapshot("triage", -1, {}, [])
    assert control.versions() == {} and control.lease("leader") is None


def test_the_clock_is_the_databases_and_it_moves(control: ControlPlane) -> None:
    a = control.clock()
    b = poll(lambda: (c := control.clock()) > a and c, "the clock to move", 5)
    assert abs(a - time.time()) < 60 and b > a  # same host: about the wall clock
