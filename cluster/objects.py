"""Which client key created each object a teacher stores for the proxy's one account.

Behind the proxy, every client shares the teacher's key: the provider keeps all of their stored
responses and files together, and would hand any of them to any client. So the proxy binds each
object it sees created (a Responses API response, an uploaded file) to the creating key's id,
and answers another key as if the object did not exist, like feedback on another key's request.

The bindings live in the control plane (`owned_objects`), so every worker and replica answers
the same: an object created through one is fetched through another. A binding is recorded
whether or not the call is captured (capture off keeps the content out of the log, not the fact
of ownership). It is queued and written off the event loop at once; the queue answers lookups
until then. A binding not yet written when its process dies is forgotten: its object then
answers 404 to everyone, never to the wrong key. With the control plane unreachable, lookups
fail closed (`ControlUnavailable`) and bindings wait in the queue.
"""

from __future__ import annotations

import asyncio
import logging

from cluster.control import ControlPlane

log = logging.getLogger("apprentice.cluster")
Binding = tuple[str, str]  # (kind, key id)


class ObjectOwners:
    """Bindings of stored objects to the key ids that created them."""

    def __init__(self, control: ControlPlane) -> None:
        self._control = control
        self._pending: dict[str, Binding] = {}  # object id -> binding, not yet written
        self._task: asyncio.Task[None] | None = None

    def bind(self, object_id: str, kind: str, key_id: str) -> None:
        """Record that `key_id` created `object_id`; never blocks."""
        self._pending.setdefault(object_id, (kind, key_id))
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._commit())

    async def owner(self, object_id: str) -> Binding | None:
        """(kind, key id) of an object the proxy saw created, or None."""
        if object_id in self._pending:
            return self._pending[object_id]
        return await asyncio.to_thread(self._control.object_owner, object_id)

    async def owned(self, kind: str, key_id: str) -> set[str]:
        """The ids of every object of `kind` that `key_id` created."""
        pending = {o for o, binding in self._pending.items() if binding == (kind, key_id)}
        committed = await asyncio.to_thread(self._control.owned_objects, kind, key_id)
        return committed | pending

    async def settle(self) -> None:
        """Write what is queued (at shutdown, before the control plane closes)."""
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
        if self._pending:
            await self._commit()

    async def _commit(self) -> None:
        while self._pending:
            batch = dict(self._pending)
            rows = [(o, kind, key) for o, (kind, key) in batch.items()]
            try:
                await asyncio.to_thread(self._control.bind_objects, rows)
            except Exception:  # the queue keeps them: lookups still answer, the next bind retries
                log.exception("binding %d stored objects to their keys failed", len(rows))
                return
            for object_id in batch:
                self._pending.pop(object_id, None)
