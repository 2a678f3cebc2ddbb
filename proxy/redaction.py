"""Redaction: no configured secret leaves the proxy, in any byte it sends or stores.

A provider's error may quote the key it was sent (OpenAI's 401 does: "Incorrect API key
provided: sk-..."); a teacher or a remote student may echo one in an answer. Every body, every
stream chunk, every error message and every stored row passes through one `Redactor` built
from all configured secrets (client keys, the admin token, teacher and student keys).

Streams are the hard part: a secret may arrive split across two chunks. `StreamRedactor` holds
back the end of a chunk only while it could still be the start of a secret, so ordinary text is
never delayed, and releases it with the next chunk or at the end.

A secret may also hide from byte matching: written with JSON escapes (`\\u0073\\u006b...`), or
spread over several SSE events that a client joins back into one text. `document` redacts the
decoded strings of a JSON body, and `proxy.event_redaction` the text a stream's deltas add up to.

Secrets shorter than `MIN_LENGTH` cannot be told from ordinary text (replacing "abc" would
corrupt answers); they are not redacted, and the server warns about them at start.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable
from typing import Any

import orjson

MIN_LENGTH = 8
MASK = b"[redacted]"
# The only escapes that can spell a secret's characters in JSON: \uXXXX, and \/ for a slash.
_ESCAPES = (b"\\u", b"\\/")


class Redactor:
    """Every configured secret, replaced by `[redacted]`."""

    def __init__(self, secrets: Iterable[str]) -> None:
        unique = {s.encode() for s in secrets if s}
        self.too_short = sorted(s.decode() for s in unique if len(s) < MIN_LENGTH)
        # Longest first: a secret that contains another is replaced whole.
        self.secrets = sorted((s for s in unique if len(s) >= MIN_LENGTH), key=len, reverse=True)
        self.texts = [s.decode() for s in self.secrets]

    def bytes(self, data: bytes) -> bytes:
        for secret in self.secrets:
            if secret in data:
                data = data.replace(secret, MASK)
        return data

    def text(self, text: str) -> str:
        for plain in self.texts:
            if plain in text:
                text = text.replace(plain, MASK.decode())
        return text

    def document(self, data: builtins.bytes) -> builtins.bytes:
        """A whole body: its bytes redacted, and when it is JSON that escapes characters, the
        strings it decodes to (re-serialised only when one held a secret)."""
        data = self.bytes(data)
        if not self.secrets or not any(e in data for e in _ESCAPES):
            return data
        try:
            parsed = orjson.loads(data)
        except orjson.JSONDecodeError:
            return data
        cleaned, changed = self.strings(parsed)
        return orjson.dumps(cleaned) if changed else data

    def document_text(self, text: str) -> str:
        """`document` for a body already decoded to text (a stored row's request or answer)."""
        text = self.text(text)
        if not self.secrets or ("\\u" not in text and "\\/" not in text):
            return text
        return self.document(text.encode()).decode()

    def strings(self, value: Any) -> tuple[Any, bool]:
        """`value` (parsed JSON) with every string redacted, and whether any changed."""
        if isinstance(value, str):
            cleaned = self.text(value)
            return cleaned, cleaned is not value and cleaned != value
        if isinstance(value, dict):
            changed = False
            for key, item in value.items():
                new, did = self.strings(item)
                if did:
                    value[key], changed = new, True
            return value, changed
        if isinstance(value, list):
            changed = False
            for i, item in enumerate(value):
                new, did = self.strings(item)
                if did:
                    value[i], changed = new, True
            return value, changed
        return value, False

    def could_begin(self, text: str) -> int:
        """Length of the longest end of `text` that is the start of some secret (at most the
        longest secret's length minus one): what a stream must hold back."""
        best = 0
        for secret in self.texts:
            tail = text[-(len(secret) - 1) :]
            start = tail.find(secret[0])
            while start != -1:
                if secret.startswith(tail[start:]):
                    best = max(best, len(tail) - start)
                    break
                start = tail.find(secret[0], start + 1)
        return best

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
