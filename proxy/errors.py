"""Errors in the caller's API shape, raised anywhere in the proxy and rendered once at the
boundary: OpenAI's `{"error": {...}}`, or Anthropic's `{"type": "error", "error": {...}}` for the
Messages surface."""

from __future__ import annotations

import re
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


# An answer the proxy gives itself that a retry cannot change: the official SDKs retry 408,
# 409, 429 and 5xx unless told otherwise. (A 408 is a slow client body: a retry may succeed.)
RETRIED = frozenset({408, 409, 429})


def error_response(error: ApiError) -> Response:
    headers = error.headers
    if (400 <= error.status < 500 and error.status not in RETRIED) or error.status == 501:
        headers = {"x-should-retry": "false"} | headers
    return Response(
        error.body(), status_code=error.status, media_type="application/json", headers=headers
    )


async def handle_api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc)


async def handle_http_exception(request: Request, exc: Exception) -> Response:
    """Starlette's own 404/405 (unknown paths and methods), in OpenAI's shape."""
    from proxy.misdirected import missing_v1  # it builds ApiErrors: imported here, not above

    status = getattr(exc, "status_code", 500)
    path = request.url.path
    if status == 404 and (misdirected := missing_v1(request)) is not None:
        return error_response(misdirected)
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
        allow = (getattr(exc, "headers", None) or {}).get("Allow", "")
        message = f"{request.method} is not allowed on {path}; it takes {allow}."
        headers = {"allow": allow} if allow else None
        return error_response(ApiError(405, message, code="method_not_allowed", headers=headers))
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


# litellm's exception text: `litellm.<Kind>: <Provider>Exception - <provider body>`, then its
# advice (`Handle with litellm.X`, `LiteLLM Retried: n times`, model groups): not a client's.
_LITELLM_HEAD = re.compile(r"^\s*litellm\.\w+:\s*(?:\w*Exception\s*-\s*)?")
_LITELLM_TAIL = re.compile(
    r"\.?\s*(?:Handle with `litellm|LiteLLM Retried|Received Model Group|Available Model Group"
    r"|model=\S+\. context_window_fallback).*$",
    re.S,
)


def provider_message(exc: Exception) -> str:
    """What a provider said, out of a litellm exception: its error's message when the body
    is JSON, the text otherwise, without litellm's class names and advice."""
    text = str(getattr(exc, "message", None) or exc)
    text = _LITELLM_TAIL.sub("", _LITELLM_HEAD.sub("", text)).strip()
    try:
        parsed = orjson.loads(text)
    except orjson.JSONDecodeError:
        return text or type(exc).__name__
    error = parsed.get("error", parsed) if isinstance(parsed, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    return str(message) if message else text
