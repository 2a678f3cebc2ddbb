"""Background loops of `serve` (rollout, schedule): a tick every few seconds until stopped."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable


async def tick_until(
    stop: asyncio.Event, seconds: float, tick: Callable[[], Awaitable[None]], log: logging.Logger
) -> None:
    """Await `tick()` every `seconds` until `stop` is set. A failing tick is logged and the
    loop goes on: one bad tick must not end canary control or the retrain schedule."""
    while not stop.is_set():
        try:
            await tick()
        except Exception:
            log.exception("background tick failed; trying again in %g s", seconds)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=seconds)
