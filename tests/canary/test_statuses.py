"""What each canary transition means for the students' statuses in the registry."""

from __future__ import annotations

from canary.controller import Transition
from canary.statuses import Serving, status_changes


def move(from_state: str, to_state: str, version: str | None) -> Transition:
    return Transition(0.0, from_state, to_state, version, None, 0, "manual", "")


def test_a_candidate_takes_the_status_of_its_step() -> None:
    assert status_changes(Serving(None, None), move("idle", "shadow", "v1"), None) == {
        "v1": "shadow"
    }
    assert status_changes(Serving("v1", None), move("shadow", "canary", "v1"), None) == {
        "v1": "canary"
    }
    assert status_changes(Serving("v1", None), move("canary", "paused", "v1"), None) == {}


def test_a_promotion_retires_the_student_it_replaces() -> None:
    changes = status_changes(Serving("v2", "v1"), move("canary", "promoted", "v2"), "v2")
    assert changes == {"v1": "retired", "v2": "promoted"}


def test_a_rollback_takes_everything_the_route_served_off_traffic() -> None:
    changes = status_changes(Serving("v2", "v1"), move("canary", "rolled_back", "v2"), None)
    assert changes == {"v1": "rolled_back", "v2": "rolled_back"}
    alone = status_changes(Serving("v1", "v1"), move("promoted", "rolled_back", "v1"), None)
    assert alone == {"v1": "rolled_back"}


def test_a_candidate_replaced_before_its_verdict_goes_back_to_the_pool() -> None:
    changes = status_changes(Serving("v2", "v1"), move("canary", "shadow", "v3"), "v1")
    assert changes == {"v2": "candidate", "v3": "shadow"}
    # a candidate that already lost its canary keeps that verdict
    after_rollback = status_changes(Serving("v2", None), move("rolled_back", "shadow", "v3"), None)
    assert after_rollback == {"v3": "shadow"}
