"""Which client key created each object a teacher stores for the proxy's one account.

Behind the proxy, every client shares the teacher's key: the provider keeps all of their stored
responses and files together, and would hand any of them to any client. So the proxy binds each
object it sees created (a Responses API response, an uploaded file) to the creating key's id,
and answers another key as if the object did not exist, like feedback on another key's request.

A binding is recorded whether or not the call is captured (capture off keeps the content out
of the log, not the fact of ownership). It is queued and written on the logbook's thread within
a moment; the queue answers lookups until then. A crash in that moment forgets the bindings it
held: their objects then answer 404 to everyone, never to the wrong key.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import duckdb

log = logging.getLogger("apprentice.logbook")
T = TypeVar("T")
Runner = Callable[[Callable[[duckdb.DuckDBPyConnection], Any]], Awaitable[Any]]
Binding = tuple[str, str | None]  # (kind, key id)


class ObjectOwners:
    """Bindings of stored objects to the key ids that created them (`owned_objects`)."""

    def __init__(self, run: Runner) -> None:
        self._run = run
        self._pending: dict[str, Binding] = {}  # object id -> binding, not yet committed
        self._task: asyncio.Task[None] | None = None

    def bind(self, object_id: str, kind: str, key_id: str | None) -> None:
        """Record that `key_id` created `object_id`; never blocks."""
        self._pending[object_id] = (kind, key_id)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._commit())

    async def owner(self, object_id: str) -> Binding | None:
        """(kind, key id) of an object the proxy saw created, or None."""
        if object_id in self._pending:
            return self._pending[object_id]

        def lookup(con: duckdb.DuckDBPyConnection) -> Binding | None:
            row = con.execute(
                "SELECT kind, key_id FROM owned_objects WHERE object_id = ?", [object_id]
            ).fetchone()
            return None if row is None else (str(row[0]), row[1])

        found: Binding | None = await self._run(lookup)
        return found

    async def owned(self, kind: str, key_id: str | None) -> set[str]:
        """The ids of every object of `kind` that `key_id` created."""
        pending = {o for o, (k, key) in self._pending.items() if k == kind and key == key_id}

        def lookup(con: duckdb.DuckDBPyConnection) -> set[str]:
            rows = con.execute(
                "SELECT object_id FROM owned_objects WHERE kind = ? AND key_id IS NOT DISTINCT "
                "FROM ?",
                [kind, key_id],
            ).fetchall()
            return {str(r[0]) for r in rows}

        committed: set[str] = await self._run(lookup)
        return committed | pending

    async def settle(self) -> None:
        """Wait for the bindings being written (at shutdown, before the file closes)."""
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
        if self._pending:
            await self._commit()

    async def _commit(self) -> None:
        batch = dict(self._pending)
        rows = [
            (o, k, key, datetime.now(UTC).replace(tzinfo=None)) for o, (k, key) in batch.items()
        ]
        try:
            await self._run(lambda con: _insert(con, rows))
        except Exception:  # the queue keeps them: lookups still answer, the next bind retries
            log.exception("binding %d stored objects to their keys failed", len(rows))
            return
        for object_id, binding in batch.items():
            if self._pending.get(object_id) == binding:
                del self._pending[object_id]


def _insert(con: duckdb.DuckDBPyConnection, rows: list[tuple[Any, ...]]) -> None:
    con.executemany("INSERT OR REPLACE INTO owned_objects VALUES (?, ?, ?, ?)", rows)
