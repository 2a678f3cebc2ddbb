"""Stage 4, scrub: personal data and secrets out of prompts, tool-call arguments and answers.

Found values are replaced by typed placeholders numbered per conversation: the same address is
`<EMAIL_1>` wherever it appears in that pair's prompt and answer, so the student still learns
that the answer repeats what the prompt said. Numbers that look like cards, IBANs or IPs are
checked (Luhn, ISO 7064 mod 97, `ipaddress`) so that order numbers and versions survive.

One alternation scans each text once; its order decides overlaps (a JWT is not also read as
an API key, an SSN is not also read as a phone number).
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from curation.pairs import Pair
from curation.report import StageReport
from curation.settings import CurationSettings

PATTERNS: tuple[tuple[str, str], ...] = (
    ("JWT", r"\beyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}"),
    ("BEARER", r"(?i:\bbearer\s+)(?P<BEARER_VALUE>[A-Za-z0-9._~+/=-]{16,})"),
    (
        "API_KEY",
        r"\b(?:sk-(?:proj-|ant-)?[A-Za-z0-9_-]{20,}|AKIA[0-9A-Z]{16}|gh[pousr]_[A-Za-z0-9]{36,}"
        r"|xox[abprs]-[A-Za-z0-9-]{10,}|AIza[0-9A-Za-z_-]{35}|[rs]k_live_[0-9A-Za-z]{24,})",
    ),
    ("EMAIL", r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b"),
    ("IBAN", r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b"),
    ("IP", r"\b(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)\b"),
    (
        "IP6",
        r"(?<![\w:])(?:[0-9A-Fa-f]{1,4}:){7}[0-9A-Fa-f]{1,4}(?![\w:])"
        r"|(?<![\w:])(?:[0-9A-Fa-f]{1,4}:){1,7}:(?:[0-9A-Fa-f]{1,4}(?::[0-9A-Fa-f]{1,4}){0,6})?(?![\w:])",
    ),
    ("CARD", r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])"),
    # US social security numbers and UK national insurance numbers.
    ("NATIONAL_ID", r"\b\d{3}-\d{2}-\d{4}\b|\b[A-CEGHJ-PR-TW-Z]{2} ?\d{2} ?\d{2} ?\d{2} ?[A-D]\b"),
    (
        "PHONE",
        r"(?<![\w+])(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?\d{2,5}(?:[ .-]\d{2,5}){1,4}\b",
    ),
)
KINDS = tuple(kind for kind, _ in PATTERNS)
_DATE = re.compile(r"^\d{4}[-./]\d{2}[-./]\d{2}$|^\d{2}[-./]\d{2}[-./]\d{4}$")
# Cheap gates decide which patterns can match at all, so most texts are scanned by few or no
# patterns: a full alternation costs ~100 µs per prompt, the gates a few.
_NUMERIC = re.compile(r"[+(\d][\d .()/-]{5,}\d")
_CODE = re.compile(r"[A-Z]{2} ?\d{2}")
_KEY_PREFIXES = ("sk-", "AKIA", "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "xox", "AIza", "k_live_")
_SCANNERS: dict[tuple[str, ...], re.Pattern[str]] = {}


def _active_kinds(text: str) -> tuple[str, ...]:
    active = set()
    if "eyJ" in text:
        active.add("JWT")
    if "earer" in text or "EARER" in text:
        active.add("BEARER")
    if any(prefix in text for prefix in _KEY_PREFIXES):
        active.add("API_KEY")
    if "@" in text:
        active.add("EMAIL")
    if "::" in text or text.count(":") >= 7:
        active.add("IP6")
    if _NUMERIC.search(text):
        active.update(("IP", "CARD", "NATIONAL_ID", "PHONE"))
    if _CODE.search(text):
        active.update(("IBAN", "NATIONAL_ID"))
    return tuple(kind for kind in KINDS if kind in active)


def _scanner(kinds: tuple[str, ...]) -> re.Pattern[str]:
    """One alternation of the given kinds, in `PATTERNS` order (which decides overlaps)."""
    scanner = _SCANNERS.get(kinds)
    if scanner is None:
        wanted = [(k, p) for k, p in PATTERNS if k in kinds]
        scanner = re.compile("|".join(f"(?P<{k}>{p})" for k, p in wanted))
        _SCANNERS[kinds] = scanner
    return scanner


def luhn_valid(digits: str) -> bool:
    """The Luhn checksum every payment card number satisfies."""
    total = 0
    for i, char in enumerate(reversed(digits)):
        d = int(char)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def iban_valid(text: str) -> bool:
    """ISO 13616 check: move the first four characters to the end, letters to numbers, mod 97."""
    compact = text.replace(" ", "")
    if not 15 <= len(compact) <= 34:
        return False
    moved = compact[4:] + compact[:4]
    return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1


def _checked(kind: str, value: str) -> bool:
    """Whether a regex match really is what its kind says."""
    if kind == "CARD":
        digits = re.sub(r"\D", "", value)
        return 13 <= len(digits) <= 19 and luhn_valid(digits)
    if kind == "IBAN":
        return iban_valid(value)
    if kind == "IP6":
        try:
            ipaddress.IPv6Address(value)
        except ValueError:
            return False
        return True
    if kind == "PHONE":
        count = sum(c.isdigit() for c in value)
        separators = sum(c in " .-" for c in value)
        shaped = value.startswith("+") or "(" in value or separators >= 2
        return 7 <= count <= 15 and shaped and not _DATE.match(value)
    return True


class Scrubber:
    """Replaces findings in the texts of one conversation, numbering each kind's values."""

    def __init__(self) -> None:
        self.placeholders: dict[tuple[str, str], str] = {}
        self.kinds: Counter[str] = Counter()

    def text(self, text: str) -> str:
        kinds = _active_kinds(text)
        return _scanner(kinds).sub(self._replace, text) if kinds else text

    def _replace(self, match: re.Match[str]) -> str:
        kind = match.lastgroup or ""
        value = match.group(kind)
        if kind == "BEARER":
            value = match.group("BEARER_VALUE")
        if not _checked(kind, value):
            return match.group(0)
        label = "API_KEY" if kind == "BEARER" else ("IP" if kind == "IP6" else kind)
        key = (label, value)
        if key not in self.placeholders:
            self.kinds[label] += 1
            self.placeholders[key] = f"<{label}_{self.kinds[label]}>"
        return match.group(0).replace(value, self.placeholders[key])

    def message(self, message: dict[str, Any]) -> dict[str, Any]:
        out = dict(message)
        content = message.get("content")
        if isinstance(content, str):
            out["content"] = self.text(content)
        elif isinstance(content, list):
            out["content"] = [self._part(p) for p in content]
        if message.get("tool_calls"):
            out["tool_calls"] = [self._call(c) for c in message["tool_calls"]]
        return out

    def _part(self, part: Any) -> Any:
        if isinstance(part, dict) and isinstance(part.get("text"), str):
            return {**part, "text": self.text(part["text"])}
        return part

    def _call(self, call: Any) -> Any:
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict) and isinstance(function.get("arguments"), str):
            return {**call, "function": {**function, "arguments": self.text(function["arguments"])}}
        return call


def scrub_pairs(pairs: list[Pair], settings: CurationSettings) -> tuple[list[Pair], StageReport]:
    """Mask (or drop rows holding) PII and secrets, as `settings.scrub` says."""
    dropped: Counter[str] = Counter()
    changed: Counter[str] = Counter()
    if settings.scrub == "off":
        return pairs, StageReport.of("scrub", len(pairs), len(pairs), dropped, changed)
    kept: list[Pair] = []
    for pair, suspect in zip(pairs, _suspects(pairs), strict=True):
        if not suspect:
            kept.append(pair)
            continue
        scrubber = Scrubber()
        messages = [scrubber.message(m) for m in pair.messages]
        answer = scrubber.message(pair.answer) if pair.answer is not None else None
        if not scrubber.kinds:
            kept.append(pair)
            continue
        if settings.scrub == "drop":
            dropped[f"contains_{min(scrubber.kinds).lower()}"] += 1
            continue
        if answer != pair.answer:
            pair.teacher_logprobs = None  # they spell out the unmasked answer
        pair.messages, pair.answer = messages, answer
        changed.update({kind.lower(): 1 for kind in scrubber.kinds})
        kept.append(pair)
    return kept, StageReport.of("scrub", len(pairs), len(kept), dropped, changed)


# A superset of every pattern above in RE2 syntax (no look-arounds), run by Arrow over all
# pairs at once: only pairs it flags pay for the Python scan, and most pairs hold nothing.
_GATE_BATCH = 10_000
_GATE = "|".join(
    (
        r"eyJ[A-Za-z0-9_-]{5,}\.eyJ",
        r"(?i:bearer)\s+[A-Za-z0-9._~+/=-]{16}",
        r"sk-|AKIA|gh[pousr]_|xox[abprs]-|AIza|[rs]k_live_",
        r"@[A-Za-z0-9-]+\.",
        r"[A-Z]{2}\d{2} ?[A-Z0-9]{4}",
        r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}",
        r"[0-9A-Fa-f]{1,4}::|(?:[0-9A-Fa-f]{1,4}:){7}",
        r"\d(?:[ -]?\d){12}",
        r"\d{3}-\d{2}-\d{4}|[A-Z]{2} ?\d{2} ?\d{2} ?\d{2} ?[A-D]",
        r"\d{2}[ .-]\d{2}",
    )
)


def _suspects(pairs: list[Pair]) -> list[bool]:
    """Whether each pair's texts might hold anything `PATTERNS` matches."""
    flags: list[bool] = []
    for lo in range(0, len(pairs), _GATE_BATCH):  # batches bound the joined texts held at once
        texts = [
            "\n".join(_texts(p.messages + ([p.answer] if p.answer else [])))
            for p in pairs[lo : lo + _GATE_BATCH]
        ]
        matched = pc.match_substring_regex(pa.array(texts, pa.large_string()), _GATE)
        flags += [bool(flag) for flag in matched.to_pylist()]
    return flags


def _texts(messages: list[dict[str, Any]]) -> Iterator[str]:
    for message in messages:
        content = message.get("content")
        if isinstance(content, str):
            yield content
        elif isinstance(content, list):
            yield from (
                p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)
            )
        for call in message.get("tool_calls") or ():
            function = call.get("function") if isinstance(call, dict) else None
            if isinstance(function, dict) and isinstance(function.get("arguments"), str):
                yield function["arguments"]
