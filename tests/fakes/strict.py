"""Strict checks of the fake's answers against the official SDKs' own models.

The SDKs build their objects without validation (a missing field is just None), so a test
that only reads attributes would pass on a broken shape: the tests validate the raw JSON with
the SDK models' `model_validate`, every required field and type. These read the raw streams.
"""

from __future__ import annotations

import json
import typing
from typing import Any

import pydantic


def by_type(union: Any) -> dict[str, type[pydantic.BaseModel]]:
    """The models of a stream-event union, by the literal of their `type` field."""
    members = typing.get_args(typing.get_args(union)[0]) or typing.get_args(union)
    out = {}
    for member in members:
        (kind,) = typing.get_args(member.model_fields["type"].annotation)
        out[kind] = member
    return out


def sse_events(lines: list[str]) -> list[tuple[str | None, str]]:
    """(event name, data) for each event of a raw SSE body, read as a client reads it."""
    events: list[tuple[str | None, str]] = []
    name: str | None = None
    data: list[str] = []
    for line in lines:
        if not line:
            if data:
                events.append((name, "\n".join(data)))
            name, data = None, []
        elif line.startswith("event:"):
            name = line[len("event:") :].strip()
        elif line.startswith("data:"):
            data.append(line[len("data:") :].strip())
    if data:
        events.append((name, "\n".join(data)))
    return events


def event_data(lines: list[str]) -> list[tuple[str | None, dict[str, Any]]]:
    """Named events with their JSON data; an OpenAI `[DONE]` sentinel is left out."""
    return [(name, json.loads(data)) for name, data in sse_events(lines) if data != "[DONE]"]
