"""A bounded poll: what the cluster tests wait with instead of fixed sleeps."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import pytest

T = TypeVar("T")


def poll(check: Callable[[], T], what: str, deadline_s: float, every_s: float = 0.01) -> T:
    """Call `check` until it returns something true (returned), or fail saying what never
    happened within `deadline_s`."""
    deadline = time.monotonic() + deadline_s
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {deadline_s} s waiting for {what}")
        time.sleep(every_s)
