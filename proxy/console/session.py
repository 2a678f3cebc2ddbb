"""The console's login: the admin token exchanged once for a signed session cookie.

The cookie holds no secret and no server-side record: `v1.<expiry>.<nonce>.<signature>`, signed
with a key derived from the admin token. Every replica configured with the same token checks it
alone (a session made on one replica works on any other), and changing the token ends every
session. The token itself never leaves the login form: not in a URL, a cookie or the page.

Cross-site requests: the cookie is SameSite=Strict and HttpOnly, and every control must also
carry `x-apprentice-csrf`, a second signature over the session's nonce that only a page of the
console can read (from `/ui/api/session`, same-origin), and an Origin, when the browser sends
one, that is this server's own.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response

from proxy.errors import ApiError
from proxy.state import proxy_state

COOKIE = "apprentice_console"
CSRF_HEADER = "x-apprentice-csrf"
SESSION_S = 12 * 3600  # a working day; then the form asks for the token again


@dataclass(frozen=True)
class Session:
    nonce: str
    expires: int
    csrf: str  # what the page must send back in CSRF_HEADER on every control


class Sessions:
    """Signs and checks console sessions for one admin token."""

    def __init__(self, admin_token: str) -> None:
        # Derived, not the token itself: a leaked signature reveals nothing usable at /admin.
        self._key = hashlib.sha256(b"apprentice-console-session\0" + admin_token.encode()).digest()
        self._token = admin_token.encode()

    def token_matches(self, presented: str) -> bool:
        """Whether `presented` is the admin token (compared in constant time)."""
        return hmac.compare_digest(presented.encode(), self._token)

    def new_cookie(self, now: float | None = None) -> str:
        expires = int(now if now is not None else time.time()) + SESSION_S
        nonce = os.urandom(16).hex()
        return f"v1.{expires}.{nonce}.{self._sign(f'{expires}.{nonce}')}"

    def check(self, cookie: str | None, now: float | None = None) -> Session | None:
        """The session a cookie proves, or None (missing, forged, expired)."""
        parts = (cookie or "").split(".")
        if len(parts) != 4 or parts[0] != "v1" or not parts[1].isdigit():
            return None
        _, expires, nonce, signature = parts
        if not hmac.compare_digest(signature, self._sign(f"{expires}.{nonce}")):
            return None
        if int(expires) <= (now if now is not None else time.time()):
            return None
        return Session(nonce, int(expires), self._sign(f"csrf.{nonce}"))

    def _sign(self, text: str) -> str:
        return hmac.new(self._key, text.encode(), hashlib.sha256).hexdigest()


def sessions(request: Request) -> Sessions:
    """The app's `Sessions`, made on first use from the admin token (403 when there is none)."""
    found: Sessions | None = getattr(request.app.state, "console_sessions", None)
    if found is None:
        token = proxy_state(request).settings.server.admin_token
        if token is None:
            raise ApiError(
                403, "The console is disabled: set server.admin_token.", code="admin_disabled"
            )
        found = Sessions(token.get_secret_value())
        request.app.state.console_sessions = found
    return found


def current_session(request: Request) -> Session | None:
    return sessions(request).check(request.cookies.get(COOKIE))


def require_session(request: Request) -> Session:
    """FastAPI dependency of every console read: a valid session cookie, or a 401."""
    session = current_session(request)
    if session is None:
        raise ApiError(
            401, "Not logged in to the console: open /ui/login.", code="console_login_required"
        )
    return session


def require_control(request: Request) -> Session:
    """FastAPI dependency of every console control: a session, its CSRF token, same origin."""
    session = require_session(request)
    if not same_origin(request):
        raise ApiError(403, "Cross-origin console request refused.", code="csrf_refused")
    presented = request.headers.get(CSRF_HEADER, "")
    if not hmac.compare_digest(presented.encode(), session.csrf.encode()):
        raise ApiError(
            403,
            f"Console control refused: the {CSRF_HEADER} header is missing or wrong; reload "
            "the page.",
            code="csrf_refused",
        )
    return session


def same_origin(request: Request) -> bool:
    """False when the browser says the request comes from another origin (a page elsewhere
    posting here); True when it matches or when no Origin was sent (same-origin GETs)."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    host = request.headers.get("host", "")
    return origin in (f"http://{host}", f"https://{host}")


def set_cookie(response: Response, request: Request, value: str) -> None:
    """The session cookie: HttpOnly (no script reads it), SameSite=Strict (no other site's
    page sends it), Secure behind HTTPS, scoped to /ui."""
    response.set_cookie(
        COOKIE,
        value,
        max_age=SESSION_S,
        path="/ui",
        httponly=True,
        samesite="strict",
        secure=_https(request),
    )


def clear_cookie(response: Response, request: Request) -> None:
    response.delete_cookie(
        COOKIE, path="/ui", httponly=True, samesite="strict", secure=_https(request)
    )


def _https(request: Request) -> bool:
    proto = request.headers.get("x-forwarded-proto", request.url.scheme)
    return proto.split(",")[0].strip() == "https"
