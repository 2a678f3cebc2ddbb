"""Redaction: no configured secret leaves the proxy, in any byte it sends or stores.

A provider's error may quote the key it was sent (OpenAI's 401 does: "Incorrect API key
provided: sk-..."); a teacher or a remote student may echo one in an answer. Every body, every
stream chunk, every error message and every stored row passes through one `Redactor` built
from all configured secrets (client keys, the admin token, teacher and student keys).

Streams are the hard part: a secret may arrive split across two chunks. `StreamRedactor` holds
back the end of a chunk only while it could still be the start of a secret, so ordinary text is
never delayed, and releases it with the next chunk or at the end.

Secrets shorter than `MIN_LENGTH` cannot be told from ordinary text (replacing "abc" would
corrupt answers); they are not redacted, and the server warns about them at start.
"""

from __future__ import annotations

from collections.abc import Iterable

MIN_LENGTH = 8
MASK = b"[redacted]"


class Redactor:
    """Every configured secret, replaced by `[redacted]`."""

    def __init__(self, secrets: Iterable[str]) -> None:
        unique = {s.encode() for s in secrets if s}
        self.too_short = sorted(s.decode() for s in unique if len(s) < MIN_LENGTH)
        # Longest first: a secret that contains another is replaced whole.
        self.secrets = sorted((s for s in unique if len(s) >= MIN_LENGTH), key=len, reverse=True)

    def bytes(self, data: bytes) -> bytes:
        for secret in self.secrets:
            if secret in data:
                data = data.replace(secret, MASK)
        return data

    def text(self, text: str) -> str:
        for secret in self.secrets:
            plain = secret.decode()
            if plain in text:
                text = text.replace(plain, MASK.decode())
        return text

    def stream(self) -> StreamRedactor:
        return StreamRedactor(self)


class StreamRedactor:
    """Redacts a byte stream chunk by chunk, secrets split across chunks included."""

    def __init__(self, redactor: Redactor) -> None:
        self.redactor = redactor
        self._held = b""

    def feed(self, chunk: bytes) -> bytes:
        """What can be sent of `chunk` now (possibly less than it, never a secret's part)."""
        data = self.redactor.bytes(self._held + chunk)
        keep = self._could_begin_a_secret(data)
        self._held = data[len(data) - keep :] if keep else b""
        return data[: len(data) - keep] if keep else data

    def flush(self) -> bytes:
        """The bytes held back, at the end of the stream."""
        held, self._held = self._held, b""
        return held

    def _could_begin_a_secret(self, data: bytes) -> int:
        """Length of the longest end of `data` that is the start of some secret."""
        best = 0
        for secret in self.redactor.secrets:
            tail = data[-(len(secret) - 1) :]
            start = tail.find(secret[:1])
            while start != -1:
                if secret.startswith(tail[start:]):
                    best = max(best, len(tail) - start)
                    break
                start = tail.find(secret[:1], start + 1)
        return best
