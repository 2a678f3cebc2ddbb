"""Requests sent the wrong way: a method a path does not take, or a base URL one level off.

Each is answered at once, without reading the body or calling the teacher, in the shape of
the client that most likely sent it, with a sentence that says what to send instead: a 405
with an `Allow` header, or a 501 naming the exact base URL to configure.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from proxy.errors import ApiError

# The OpenAI families a client with a base URL missing its /v1 calls (`POST /chat/completions`).
OPENAI_FAMILIES = frozenset({
    "chat", "responses", "embeddings", "completions", "moderations", "audio", "images",
    "files", "uploads", "batches", "models", "vector_stores", "assistants", "threads",
    "fine_tuning", "realtime", "evals", "containers", "conversations", "feedback",
})  # fmt: skip
# Methods a pass-through path may relay; TRACE, CONNECT, OPTIONS... are no API's.
PASSTHROUGH_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"})


def root_url(request: Request) -> str:
    """The proxy's root as this client reached it (`http://host:port`)."""
    return f"{request.url.scheme}://{request.url.netloc}"


async def method_not_allowed(request: Request, allowed: frozenset[str]) -> Response:
    """Raise the 405 for this request's method and path."""
    path = request.url.path
    allow = ", ".join(sorted(allowed))
    exc = ApiError(405, f"{request.method} is not allowed on {path}; it takes {allow}.",
                   code="method_not_allowed", headers={"allow": allow})  # fmt: skip
    exc.anthropic = path.startswith("/v1/messages")
    raise exc


async def doubled_v1(request: Request) -> Response:
    """`/v1/v1/...`: an Anthropic client given a base URL with /v1 (it adds /v1 itself), or
    an OpenAI client given one ending in /v1/v1."""
    path, root = request.url.path, root_url(request)
    if path.startswith("/v1/v1/messages"):
        exc = ApiError(
            501,
            f"{path} has /v1 twice: Anthropic's clients add /v1 themselves; use "
            f"base_url={root} (without /v1) in the Anthropic client.",
            code="wrong_base_url",
        )
        exc.anthropic = True
        raise exc
    raise ApiError(
        501,
        f"{path} has /v1 twice; use base_url={root}/v1 (not .../v1/v1) in the OpenAI client.",
        code="wrong_base_url",
    )


def missing_v1(request: Request) -> ApiError | None:
    """The error for an OpenAI call whose base URL lacks /v1 (`POST /chat/completions`), or
    None when the path is no such call."""
    path = request.url.path
    if path.strip("/").split("/")[0] not in OPENAI_FAMILIES:
        return None
    root = root_url(request)
    return ApiError(
        501,
        f"apprentice serves the OpenAI API under /v1, not at {path}; use base_url={root}/v1 "
        "in the OpenAI client.",
        code="wrong_base_url",
    )
