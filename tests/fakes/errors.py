"""Error bodies in the two dialects the fake teacher speaks, and the exception surfaces raise.

OpenAI: `{"error": {"message", "type", "param", "code"}}`. Anthropic: `{"type": "error",
"error": {"type", "message"}, "request_id"}`, its `type` named by the status as in Anthropic's
error table. A surface raises `ApiError`; the server writes it in the dialect of the endpoint.
"""

from __future__ import annotations

from typing import Any, Protocol

ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}


class ApiError(Exception):
    """A request the fake refuses, as the real API would (status, message, and OpenAI's
    `param` and `code` where it names them)."""

    def __init__(
        self, status: int, message: str, *, param: str | None = None, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code


class ErrorShape(Protocol):
    def __call__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        request_id: str = "",
    ) -> dict[str, Any]: ...


def openai_error(
    status: int,
    message: str,
    *,
    param: str | None = None,
    code: str | None = None,
    request_id: str = "",
) -> dict[str, Any]:
    if status == 429:  # OpenAI's rate limits are typed "requests", coded as such
        kind, code = "requests", code or "rate_limit_exceeded"
    else:
        kind = "server_error" if status >= 500 else "invalid_request_error"
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def anthropic_error(
    status: int,
    message: str,
    *,
    param: str | None = None,
    code: str | None = None,
    request_id: str = "",
) -> dict[str, Any]:
    kind = ANTHROPIC_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    body: dict[str, Any] = {"type": "error", "error": {"type": kind, "message": message}}
    if request_id:
        body["request_id"] = request_id
    return body
