"""Errors in OpenAI's shape, raised anywhere in the proxy and rendered once at the boundary."""

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

    def body(self) -> bytes:
        return error_body(self.message, self.type, self.code, self.param)


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
        message = (
            f"apprentice does not serve {path}; it proxies POST /v1/chat/completions "
            "(call other endpoints on the provider directly)."
        )
        return error_response(ApiError(404, message, code="unsupported_endpoint"))
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
