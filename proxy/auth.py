"""Who may call: client keys for /v1/*, the admin token for /admin/*.

Keys are compared by their SHA-256 digest, so a lookup never touches the key itself; the log
keeps a short key id derived from the digest, never the key.
"""

from __future__ import annotations

import hashlib
import hmac

from starlette.requests import Request

from proxy.errors import ApiError


def key_id(key: str) -> str:
    """A stable, non-reversible id for a client key, safe to log."""
    return "key_" + hashlib.sha256(key.encode()).hexdigest()[:10]


class Auth:
    def __init__(self, api_keys: list[str], admin_token: str | None) -> None:
        self._keys = {hashlib.sha256(k.encode()).digest(): key_id(k) for k in api_keys}
        self._admin = admin_token
        self.open = not api_keys

    def client(self, request: Request) -> str | None:
        """The caller's key id from `Authorization: Bearer` (or Azure's `api-key`); None when
        the proxy is open. Raises a 401 otherwise."""
        return self.key(_bearer(request) or request.headers.get("api-key"))

    def key(self, token: str | None) -> str | None:
        """The id of a presented key; None when the proxy is open. Raises a 401 otherwise."""
        if self.open:
            return None
        found = self._keys.get(hashlib.sha256(token.encode()).digest()) if token else None
        if found is None:
            raise ApiError(
                401,
                "Invalid or missing API key: send one of the proxy's server.api_keys as "
                "'Authorization: Bearer <key>'.",
                code="invalid_api_key",
            )
        return found

    def is_admin(self, request: Request) -> bool:
        """Whether the request carries the admin token (never true with the admin API off)."""
        token = _bearer(request)
        return (
            self._admin is not None
            and token is not None
            and hmac.compare_digest(token.encode(), self._admin.encode())
        )

    def admin(self, request: Request) -> None:
        """Raise unless the request carries the admin token."""
        if self._admin is None:
            raise ApiError(
                403, "The admin API is disabled: set server.admin_token.", code="admin_disabled"
            )
        token = _bearer(request) or ""
        if not hmac.compare_digest(token.encode(), self._admin.encode()):
            raise ApiError(
                401,
                "Invalid or missing admin token: send server.admin_token as "
                "'Authorization: Bearer <token>'.",
                code="invalid_admin_token",
            )


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()
