"""`until_answered` under a server without the proxy's disconnect future: a watcher task reads
the ASGI messages and the same callback path cancels the work."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from starlette.requests import Request

from proxy.surface import ClientGone, until_answered


def _request(messages: asyncio.Queue[dict[str, Any]]) -> Request:
    scope = {"type": "http", "method": "POST", "path": "/", "headers": [], "extensions": {}}
    return Request(scope, receive=messages.get)


def test_a_client_that_leaves_cancels_the_work_and_raises_client_gone() -> None:
    async def scenario() -> bool:
        messages: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        started, cancelled = asyncio.Event(), asyncio.Event()

        async def work() -> str:
            started.set()
            try:
                await asyncio.Event().wait()  # an answer that never comes
            except asyncio.CancelledError:
                cancelled.set()
                raise
            return "never"

        async def leave() -> None:
            await started.wait()
            await messages.put({"type": "http.disconnect"})

        leaving = asyncio.create_task(leave())
        with pytest.raises(ClientGone):
            async with asyncio.timeout(5):  # a watcher that missed the disconnect fails here
                await until_answered(_request(messages), work())
        await leaving
        return cancelled.is_set()

    assert asyncio.run(scenario())


def test_an_answer_that_comes_first_is_returned_and_a_later_disconnect_changes_nothing() -> None:
    async def scenario() -> tuple[str, bool]:
        messages: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

        async def work() -> str:
            await asyncio.sleep(0)
            return "answer"

        result = await until_answered(_request(messages), work())
        await messages.put({"type": "http.disconnect"})
        await asyncio.sleep(0)
        current = asyncio.current_task()
        assert current is not None
        return result, current.cancelling() == 0

    assert asyncio.run(scenario()) == ("answer", True)
