"""What a canary transition means for the students' statuses in the registry (pure).

The canary loop is the only writer of a student's lifecycle status; it applies the changes
this function names after every transition, so `apprentice students list` and
`apprentice canary status` always tell the same story.
"""

from __future__ import annotations

from dataclasses import dataclass

from canary.controller import ACTIVE, Transition


@dataclass(frozen=True)
class Serving:
    """Who the route's canary named before a transition: the candidate being judged (or
    last judged) and the promoted student serving the rest."""

    candidate: str | None
    current: str | None


def status_changes(before: Serving, move: Transition, current_after: str | None) -> dict[str, str]:
    """Version -> new status for the students `move` concerns."""
    changes: dict[str, str] = {}
    replaced = before.candidate
    if (
        move.from_state in ACTIVE
        and replaced is not None
        and replaced not in (move.version, before.current, current_after)
    ):
        changes[replaced] = "candidate"  # withdrawn before it was decided: back in the pool
    version = move.version
    if version is None:
        return changes
    if move.to_state in ("shadow", "canary"):
        changes[version] = move.to_state
    elif move.to_state == "promoted":
        if before.current is not None and before.current != version:
            changes[before.current] = "retired"
        changes[version] = "promoted"
    elif move.to_state == "rolled_back":
        # Everything the route served goes back to the teacher: the candidate and the
        # promoted student that served the rest.
        if before.current is not None:
            changes[before.current] = "rolled_back"
        changes[version] = "rolled_back"
    return changes
