"""Control plane URLs: which database a URL names, and how to show it without its password.

A Postgres URL may carry a password (in the user part or as a `password=` parameter); every
message, log line and repr shows `ControlUrl.shown`, never the URL itself.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

MASK = "***"
SQLITE_PREFIX = "sqlite://"
POSTGRES_SCHEMES = ("postgresql", "postgres")
# `host=db password=...`: libpq's keyword form, which must not be taken for a file name.
_CONNINFO = re.compile(r"^\s*[A-Za-z_]+\s*=")


@dataclass(frozen=True, repr=False)
class ControlUrl:
    """A parsed control URL: the dialect, what to connect to, and its printable form."""

    dialect: Literal["sqlite", "postgres"]
    target: str  # a filesystem path, or the Postgres URL itself (password included)
    shown: str  # the URL with any password masked: the only form that reaches a message
    secrets: tuple[str, ...] = ()  # the password as written and decoded, to scrub messages

    def __repr__(self) -> str:
        return f"ControlUrl({self.shown!r})"

    def scrub(self, text: str) -> str:
        """`text` with every occurrence of the password masked."""
        for secret in self.secrets:
            text = text.replace(secret, MASK)
        return text


def parse_control_url(url: str) -> ControlUrl:
    """Parse `sqlite:///abs/path`, a plain path, or `postgresql://` (`postgres://`) URL."""
    url = url.strip()
    if not url:
        raise ValueError("the control URL is empty; unset it for the embedded SQLite file")
    if url.startswith(SQLITE_PREFIX):
        path = url[len(SQLITE_PREFIX) :]
        if not path.startswith("/"):
            raise ValueError(
                f"{url!r} names no absolute path; write sqlite:///abs/path/control.sqlite3"
            )
        return ControlUrl("sqlite", path, url)
    scheme, sep, _ = url.partition("://")
    if sep and scheme in POSTGRES_SCHEMES:  # libpq takes these two, lower case only
        return _postgres(url)
    if sep:
        raise ValueError(
            f"a control URL starting {scheme}:// is neither sqlite:/// nor postgresql://; "
            "use one of those, or a plain path"
        )
    if _CONNINFO.match(url):
        raise ValueError(
            "the control URL looks like libpq's keyword form (name=value); "
            "write it as postgresql://user:password@host:port/db"
        )
    path = os.path.abspath(os.path.expanduser(url))
    return ControlUrl("sqlite", path, path)


def _postgres(url: str) -> ControlUrl:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises on a port that is not a number)
    except ValueError:
        raise ValueError(
            "the postgresql:// control URL cannot be parsed (a password with @ : / must be "
            "percent-encoded)"
        ) from None
    secrets: list[str] = []
    userinfo, at, hostport = parts.netloc.rpartition("@")
    netloc = parts.netloc
    if at and ":" in userinfo:
        user, _, password = userinfo.partition(":")
        secrets += [password, unquote(password)]
        netloc = f"{user}:{MASK}@{hostport}"
    query = parse_qsl(parts.query, keep_blank_values=True)
    shown_query = []
    for key, value in query:
        if key == "password":
            secrets += [value, quote(value, safe=""), quote(value)]
            value = MASK
        shown_query.append((key, value))
    query_text = urlencode(shown_query, safe="*") if query else parts.query
    shown = urlunsplit((parts.scheme, netloc, parts.path, query_text, parts.fragment))
    # Longest first, so a secret that contains another is masked whole.
    kept = sorted({s for s in secrets if s}, key=len, reverse=True)
    return ControlUrl("postgres", url, shown, tuple(kept))
