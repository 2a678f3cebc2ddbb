"""POST /v1/feedback: a client's verdict on one logged answer, used by curation."""

from __future__ import annotations

import math
import uuid
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from logbook.schema import FeedbackRow
from proxy.errors import ApiError
from proxy.exchange import now_utc
from proxy.state import proxy_state
from proxy.surface import read_body

router = APIRouter()


class FeedbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    request_id: str = Field(min_length=1, max_length=200)
    score: float = Field(ge=-1.0, le=1.0, description="-1 (bad) .. 1 (good)")
    label: str | None = Field(None, max_length=200)
    comment: str | None = Field(None, max_length=10_000)
    correction: str | dict[str, Any] | None = Field(
        None, description="The right answer: its text, or an assistant message object."
    )

    @field_validator("score")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("score must be a finite number")
        return value


@router.post("/v1/feedback")
async def post_feedback(request: Request) -> dict[str, Any]:
    """Record feedback on a request this proxy logged, from the key that made it (or the admin
    token); 404 when no such request was logged for this caller.

    The caller is known before a byte of the body is read (a stranger's 150 MB costs nothing),
    and the body is read within server.max_body_bytes and body_timeout_s like every route's."""
    state = proxy_state(request)
    admin = state.auth.is_admin(request)
    caller = None if admin else state.auth.client(request)
    body = _parsed(await read_body(request, state.settings.server))
    owner = await state.logbook.owner_of(body.request_id)
    # Another key's request is answered as if it did not exist: ids must not be probed.
    if owner is None or not (admin or state.auth.open or owner[1] == caller):
        raise ApiError(
            404,
            f"No logged request has the id {body.request_id!r}; use the "
            "x-apprentice-request-id header of a captured response.",
            code="request_not_found",
            param="request_id",
        )
    route = owner[0]
    feedback_id = f"fb_{uuid.uuid4().hex[:20]}"
    correction = body.correction
    if isinstance(correction, str):
        correction = {"role": "assistant", "content": correction}
    state.logbook.submit_feedback(
        FeedbackRow(
            feedback_id=feedback_id,
            request_id=body.request_id,
            route=route,
            created_at=now_utc().replace(tzinfo=None),
            score=body.score,
            label=body.label,
            comment=body.comment,
            correction=None if correction is None else orjson.dumps(correction).decode(),
        )
    )
    return {"id": feedback_id, "object": "feedback", "request_id": body.request_id}


def _parsed(raw: bytes) -> FeedbackIn:
    """The feedback fields, or the 422 every body validation error is (one sentence)."""
    try:
        return FeedbackIn.model_validate_json(raw)
    except ValidationError as exc:
        errors = [dict(e) | {"loc": ("body", *e["loc"])} for e in exc.errors()]
        raise RequestValidationError(errors) from None
