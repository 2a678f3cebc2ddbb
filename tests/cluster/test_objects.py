"""Owners of stored objects in the control plane, on both dialects: shared by every replica,
an object keeps its first owner, and the queue answers before it is written."""

from __future__ import annotations

import asyncio

from cluster.control import ControlPlane, open_control
from cluster.objects import ObjectOwners


def test_bindings_are_shared_and_keep_their_first_owner(
    control: ControlPlane, control_url: str
) -> None:
    control.bind_objects([("resp_1", "response", "key_a"), ("file-1", "file", "key_a")])
    control.bind_objects([("resp_1", "response", "key_b"), ("file-2", "file", "key_b")])
    other = open_control(control_url, "r2")  # another replica sees the same owners
    try:
        assert other.object_owner("resp_1") == ("response", "key_a")
        assert other.object_owner("resp_unknown") is None
        assert other.owned_objects("file", "key_a") == {"file-1"}
        assert other.owned_objects("file", "key_b") == {"file-2"}
    finally:
        other.close()


def test_a_binding_answers_before_and_after_it_is_written(control: ControlPlane) -> None:
    async def scenario() -> None:
        owners = ObjectOwners(control)
        owners.bind("file-9", "file", "key_a")
        assert await owners.owner("file-9") == ("file", "key_a")  # from the queue
        assert await owners.owned("file", "key_a") == {"file-9"}
        await owners.settle()
        assert control.object_owner("file-9") == ("file", "key_a")  # written

    asyncio.run(scenario())
