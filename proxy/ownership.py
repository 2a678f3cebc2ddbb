"""Stored responses and files answer only the client key that created them.

The teacher keeps every object of the proxy's one account together; `cluster.objects` records
which key created each one the proxy saw created, and here a call on an object of another key
(GET, DELETE, its input items, its content) is answered 404 before it reaches the teacher, and
a list of files shows the caller's own. An open proxy (no client keys) has one caller: nothing
to bind.
"""

from __future__ import annotations

import re

import orjson

from cluster.database import ControlUnavailable
from logbook.schema import RequestRow
from proxy.errors import ApiError
from proxy.exchange import Exchange
from proxy.state import ProxyState

KINDS = {"responses": "response", "files": "file"}  # endpoint family -> kind of object
# A created object's answer starts with its id (OpenAI writes it first): no parse needed.
_LEADING_ID = re.compile(r'\s*\{\s*"id"\s*:\s*"([^"\\]+)"')


def bind_created(state: ProxyState, exchange: Exchange, row: RequestRow) -> None:
    """Bind the object a successful create call answered with to the caller's key."""
    kind = KINDS.get(exchange.endpoint)
    if kind is None or exchange.key_id is None or exchange.by_student or state.owners is None:
        return
    if exchange.status != 200 or row.response is None:
        return
    object_id = _object_id(row.response)
    if object_id is not None:
        state.owners.bind(object_id, kind, exchange.key_id)


async def check_access(state: ProxyState, endpoint: str, key_id: str | None) -> None:
    """Raise a 404 when `endpoint` names a stored object another key created (or one the
    proxy never saw created)."""
    parts = endpoint.split("/")
    kind = KINDS.get(parts[0])
    if key_id is None or kind is None or len(parts) < 2 or not parts[1] or state.owners is None:
        return
    try:
        owner = await state.owners.owner(parts[1])
    except ControlUnavailable:
        raise _unavailable() from None
    if owner is None or owner != (kind, key_id):
        state.metrics.client_errors.labels("not_found").inc()
        raise ApiError(
            404,
            f"No {kind} with id {parts[1]!r} was created with this API key.",
            code="not_found",
        )


def lists_files(state: ProxyState, method: str, endpoint: str, key_id: str | None) -> bool:
    """Whether the call is a list of files, which is shown only the caller's own."""
    return (
        key_id is not None
        and state.owners is not None
        and (method, endpoint)
        == (
            "GET",
            "files",
        )
    )


async def own_files(state: ProxyState, key_id: str, body: bytes) -> bytes:
    """A list of files with only those `key_id` created."""
    try:
        listing = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body
    if not isinstance(listing, dict) or not isinstance(listing.get("data"), list):
        return body
    assert state.owners is not None
    try:
        owned = await state.owners.owned("file", key_id)
    except ControlUnavailable:
        raise _unavailable() from None
    listing["data"] = [f for f in listing["data"] if isinstance(f, dict) and f.get("id") in owned]
    return orjson.dumps(listing)


def _unavailable() -> ApiError:
    # Fail closed: without the bindings, no key can be shown to own anything.
    return ApiError(
        503,
        "The control plane, which records who created each stored response and file, cannot "
        "be reached; retry shortly.",
        "server_error",
        code="control_plane_unavailable",
    )


def _object_id(answer: str) -> str | None:
    found = _LEADING_ID.match(answer)
    if found is not None:
        return found.group(1)
    try:
        parsed = orjson.loads(answer)
    except orjson.JSONDecodeError:
        return None
    object_id = parsed.get("id") if isinstance(parsed, dict) else None
    return object_id if isinstance(object_id, str) and object_id else None
