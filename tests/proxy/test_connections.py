"""The connection's view for one response: head and body in one write, a lone head not held."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from proxy.connections import HeadWithBody


class Recorded:
    """What the socket was asked to send: the transport is the event loop's, outside us."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, bytes]] = []

    def write(self, data: bytes) -> None:
        self.calls.append(("write", data))

    def writelines(self, parts: Any) -> None:
        self.calls.append(("writelines", b"|".join(parts)))

    def close(self) -> None:
        self.calls.append(("close", b""))

    def is_closing(self) -> bool:
        return False

    def get_extra_info(self, name: str) -> str:
        return f"info:{name}"


def _wrapped() -> tuple[Recorded, HeadWithBody]:
    recorded = Recorded()
    transport = cast(asyncio.Transport, recorded)
    return recorded, HeadWithBody(transport, asyncio.get_running_loop())


async def _next_iteration() -> None:
    await asyncio.sleep(0)
    await asyncio.sleep(0)


def test_a_whole_answer_goes_out_in_one_write() -> None:
    async def scenario() -> list[tuple[str, bytes]]:
        recorded, connection = _wrapped()
        connection.write(b"HTTP/1.1 200 OK\r\n\r\n")
        connection.write(b"{}")
        connection.write(b"more")  # later writes pass straight through
        await _next_iteration()  # the held head is not sent a second time
        return recorded.calls

    assert asyncio.run(scenario()) == [
        ("writelines", b"HTTP/1.1 200 OK\r\n\r\n|{}"),
        ("write", b"more"),
    ]


def test_a_head_with_no_body_yet_leaves_at_the_end_of_the_iteration() -> None:
    async def scenario() -> tuple[list[tuple[str, bytes]], list[tuple[str, bytes]]]:
        recorded, connection = _wrapped()
        connection.write(b"HTTP/1.1 200 OK\r\n\r\n")  # a stream: its first chunk comes later
        held = list(recorded.calls)
        await _next_iteration()
        connection.write(b"data: 1\n\n")
        return held, recorded.calls

    held, sent = asyncio.run(scenario())
    assert held == []
    assert sent == [("write", b"HTTP/1.1 200 OK\r\n\r\n"), ("write", b"data: 1\n\n")]


def test_closing_sends_a_held_head_first_and_other_calls_reach_the_transport() -> None:
    async def scenario() -> tuple[list[tuple[str, bytes]], Any]:
        recorded, connection = _wrapped()
        connection.write(b"HTTP/1.1 204 No Content\r\n\r\n")
        connection.close()
        await _next_iteration()
        return recorded.calls, connection.get_extra_info("peername")

    sent, info = asyncio.run(scenario())
    assert sent == [("write", b"HTTP/1.1 204 No Content\r\n\r\n"), ("close", b"")]
    assert info == "info:peername"
