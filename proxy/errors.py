"""Errors in the caller's API shape, raised anywhere in the proxy and rendered once at the
boundary: OpenAI's `{"error": {...}}`, or Anthropic's `{"type": "error", "error": {...}}` for the
Messages surface."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response


class ApiError(Exception):
    """An error a client should see: `{"error": {message, type, param, code}}` with a status."""

    def __init__(
        self,
        status: int,
        message: str,
        type_: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_
        self.code = code
        self.param = param
        self.headers = headers or {}
        self.anthropic = False  # rendered in Anthropic's shape (set by the Messages surface)

    def body(self) -> bytes:
        if self.anthropic:
            return anthropic_error_body(self.status, self.message)
        return error_body(self.message, self.type, self.code, self.param)


# Anthropic's error types by status (https://docs.anthropic.com/en/api/errors).
ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}


def anthropic_error_body(status: int, message: str) -> bytes:
    kind = ANTHROPIC_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    return orjson.dumps({"type": "error", "error": {"type": kind, "message": message}})


def error_body(
    message: str, type_: str, code: str | None = None, param: str | None = None
) -> bytes:
    return orjson.dumps(
        {"error": {"message": message, "type": type_, "param": param, "code": code}}
    )


def error_response(error: ApiError) -> Response:
    return Response(
        error.body(), status_code=error.status, media_type="application/json", headers=error.headers
    )


async def handle_api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc)


async def handle_http_exception(request: Request, exc: Exception) -> Response:
    """Starlette's own 404/405 (unknown paths and methods), in OpenAI's shape."""
    status = getattr(exc, "status_code", 500)
    path = request.url.path
    if status == 404:
        # Not a 404: clients read a 404 as "model not found" and send users the wrong way.
        message = (
            f"apprentice does not serve {path}; it serves the OpenAI API under /v1 "
            "(chat/completions, responses, embeddings and the rest, passed through), Anthropic's "
            "POST /v1/messages, Azure-style /openai/deployments/..., and /healthz, /readyz, "
            "/metrics, /admin."
        )
        return error_response(ApiError(501, message, code="unsupported_endpoint"))
    if status == 405:
        message = f"{request.method} is not allowed on {path}."
        return error_response(ApiError(405, message, code="method_not_allowed"))
    return error_response(ApiError(status, str(getattr(exc, "detail", "error"))))


async def handle_validation_error(request: Request, exc: Exception) -> Response:
    """FastAPI body validation errors (admin and feedback endpoints), as one 422 sentence."""
    errors: list[dict[str, Any]] = getattr(exc, "errors", list)()
    if errors:
        first = errors[0]
        loc = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        message = f"Invalid field {loc or 'body'}: {first.get('msg', 'invalid value')}."
        param = loc or None
    else:
        message, param = "The request body is invalid.", None
    return error_response(ApiError(422, message, code="invalid_field", param=param))
