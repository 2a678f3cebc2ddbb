"""Slots: a tiny student sees ``⟦1⟧`` where the prompt names something, and writes ``⟦1⟧`` (or
``⟦1:t⟧``, title-cased) where its answer copies it; the proxy puts the names back.

Measured (issue 17): students of the tiny base could not copy a name they never saw, whatever
the tokenizer, augmentation or full fine-tuning; probes of the tiny architecture trained on
nothing but copy drills did not copy after 1,000 steps either. A student that never has to
copy needs no such skill: it learns where each slot goes, which a few hundred rows teach, and
any name, item, place or number fills the slot at serving time. This is delexicalisation, as
task-oriented dialogue systems used it; here the slots are found the same way at training and
serving time, so eval predicts live behaviour.

A slot is a run of prompt words that are not words of the route's template: the `Slots`
vocabulary is every word the training prompts use outside the spans their answers copy (see
`curation.spans.copied_spans`), so "please", "send", "boxes" stay words and "Marta Kowalski",
"basmati rice" or "Zaragoza" become slots, seen before or not. Runs of letters and runs of
digits are separate slots ("Blender 3000" is two). In the teacher's answer, each slot's text is
replaced by its marker, with the form the answer writes it in, said without the prompt's case:
``⟦k:t⟧`` title case, ``⟦k:l⟧`` lower case, ``⟦k:u⟧`` upper case, ``⟦k:d⟧`` a number in
digits ("six" -> 6), ``⟦k⟧`` as the prompt wrote it. Number words are slots too. Outside the
slots the prompt is lower-cased: the case of a template word says nothing the markers do not.

Used for routes whose answers copy (at least `MIN_COPYING_SHARE` of training rows); a route
that only classifies gets no slots, and behaves as before. Saved as ``slots.json`` in the
student folder; the in-process backend applies it to every request (`delexicalize`, then
`relexicalize` on the answer, streamed or not).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from curation.spans import NUMBER_WORDS

MAX_SLOTS = 16


def as_digits(value: str) -> str:
    """A number as digits: "six" -> "6", "12" -> "12"."""
    folded = value.casefold()
    return str(NUMBER_WORDS.index(folded)) if folded in NUMBER_WORDS else value


CASES = {"": None, "t": str.title, "l": str.lower, "u": str.upper, "d": as_digits}
MARKERS = [f"⟦{k}{':' + c if c else ''}⟧" for k in range(1, MAX_SLOTS + 1) for c in CASES]
MIN_COPYING_SHARE = 0.1  # rows whose answer copies a prompt span, for a route to get slots
FILE = "slots.json"

_WORD = re.compile(r"[^\W_]+(?:['’.,-][^\W_]+)*")
_MARKER = re.compile(r"⟦(\d+)(?::([tlud]))?⟧")


@dataclass(frozen=True)
class Slots:
    """The route's template words (case-folded): every other word of a prompt is a slot."""

    template: frozenset[str]
    # Template words seen right after a run of letters in training ("Marta Kowalski here",
    # "olive oil to"). Any other template word right after one belongs to it: "bin bags" is
    # one item, since no training prompt had "bags" after a name.
    follows: frozenset[str] = frozenset()

    def to_json(self) -> dict[str, Any]:
        return {"version": 1, "template": sorted(self.template), "follows": sorted(self.follows)}

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> Slots:
        return cls(
            frozenset(str(w) for w in value.get("template", [])),
            frozenset(str(w) for w in value.get("follows", [])),
        )


def route_slots(rows: Sequence[dict[str, Any]], mode: str, base: str) -> Slots | None:
    """The slots of a route's training rows, per the `slots` setting: "auto" gives them to
    the tiny base when answers copy (a real base copies by itself), "on" always, "off" never."""
    if mode == "off" or (mode == "auto" and base != "tiny"):
        return None
    from curation.spans import copied_spans
    from retrain.augment import user_text  # training side only: serving never builds slots

    texts = [user_text(r) for r in rows]
    copied = copied_spans(texts, [r.get("answer_text") or "" for r in rows])
    share = 0.0 if mode == "on" else MIN_COPYING_SHARE
    return build_slots(texts, [[s.text for s in spans] for spans in copied], share)


def build_slots(
    texts: Sequence[str], copied: Sequence[Sequence[str]], min_share: float = MIN_COPYING_SHARE
) -> Slots | None:
    """The template of prompts `texts`, leaving out the words of each one's copied spans; None
    when fewer than `min_share` of the answers copy anything (slots would not help)."""
    copying = sum(bool(spans) for spans in copied)
    if not texts or copying < min_share * len(texts) or (min_share > 0 and copying == 0):
        return None
    counts: Counter[str] = Counter()
    for text, spans in zip(texts, copied, strict=True):
        span_words = {w.casefold() for span in spans for w in _WORD.findall(span)}
        counts.update({w.casefold() for w in _WORD.findall(text)} - span_words)
    # A word seen once is as likely a name the span detector missed as a template word.
    template = frozenset(w for w, n in counts.items() if n >= 2 and not _is_number(w))
    follows: set[str] = set()
    plain = Slots(template)
    for text in texts:
        for start, end in _runs(text, plain):
            after = _WORD.match(text, end + 1) if text[end : end + 1] == " " else None
            if after is not None and not _is_number(text[start:end]):
                follows.add(after.group().casefold())
    return Slots(template, frozenset(follows & template))


def _is_number(word: str) -> bool:
    return word.replace(",", "").replace(".", "").isdigit() or word.casefold() in NUMBER_WORDS


def _runs(text: str, slots: Slots) -> list[tuple[int, int]]:
    """(start, end) of each run of non-template words: letters or digits, one space apart; a
    run of letters takes in a template word after it that never followed one in training."""
    runs: list[tuple[int, int]] = []
    for match in _WORD.finditer(text):
        word = match.group()
        template = word.casefold() in slots.template and word.casefold() not in NUMBER_WORDS
        if template and not (runs and _joins(text, runs[-1], match, slots)):
            continue
        if runs:
            start, end = runs[-1]
            same_kind = _is_number(text[start:end]) == _is_number(word)
            if same_kind and text[end : match.start()] == " ":
                runs[-1] = (start, match.end())
                continue
        runs.append((match.start(), match.end()))
    return runs


def _joins(text: str, run: tuple[int, int], match: re.Match[str], slots: Slots) -> bool:
    start, end = run
    word = match.group().casefold()
    return (
        text[end : match.start()] == " "
        and not _is_number(text[start:end])
        and not _is_number(word)
        and bool(slots.follows)  # a vocabulary from before `follows` joins nothing
        and word not in slots.follows
    )


def delexicalize_text(text: str, slots: Slots, values: list[str]) -> str:
    """`text` with each run of non-template words replaced by its marker, and the rest in
    lower case (the answer's case comes from the markers, so "PLEASE SEND" and "please send"
    are one pattern to learn, not two); `values` collects the runs (a run already in
    `values`, in any case, reuses its marker)."""
    out, last = [], 0
    for start, end in _runs(text, slots):
        value = text[start:end]
        folded = [v.casefold() for v in values]
        if value.casefold() in folded:
            k = folded.index(value.casefold()) + 1
        elif len(values) < MAX_SLOTS:
            values.append(value)
            k = len(values)
        else:
            continue  # more runs than markers: the rest stay as written
        out += [text[last:start].lower(), f"⟦{k}⟧"]
        last = end
    return "".join([*out, text[last:].lower()])


def delexicalize_messages(
    messages: list[dict[str, Any]], slots: Slots
) -> tuple[list[dict[str, Any]], list[str]]:
    """Messages with slots in every non-system text, and the slots' values in order."""
    values: list[str] = []
    out = []
    for message in messages:
        content = message.get("content")
        if message.get("role") in ("system", "developer") or not isinstance(content, str):
            out.append(message)
            continue
        out.append({**message, "content": delexicalize_text(content, slots, values)})
    return out, values


def delexicalize_answer(answer: str, values: list[str]) -> str:
    """The teacher's answer with each value's occurrences (whole words, any case) replaced by
    its marker in the case the answer writes it; longer values first, never overlapping."""
    found = []
    for i, value in enumerate(values):
        forms = {re.escape(value), re.escape(as_digits(value))}  # "six" is written 6 too
        pattern = rf"(?<!\w)(?:{'|'.join(sorted(forms, key=len, reverse=True))})(?!\w)"
        found += [(m.start(), m.end(), i) for m in re.finditer(pattern, answer, re.IGNORECASE)]
    taken: list[tuple[int, int, int]] = []
    # Longest first; between equals, the value written exactly so ("1" before "one").
    exact = {(start, end, i) for start, end, i in found if answer[start:end] == values[i]}
    for start, end, i in sorted(found, key=lambda f: (f[0] - f[1], f not in exact, f[0])):
        if all(end <= s or start >= e for s, e, _ in taken):
            taken.append((start, end, i))
    out, last = [], 0
    for start, end, i in sorted(taken):
        out += [answer[last:start], f"⟦{i + 1}{_case_of(answer[start:end], values[i])}⟧"]
        last = end
    return "".join([*out, answer[last:]])


def _case_of(written: str, value: str) -> str:
    """How the answer writes a value, said without the prompt's case ("Marta Kowalski" is
    :t whether the message said "marta kowalski" or "MARTA KOWALSKI"), so the student never
    needs to see the value's case."""
    if written.isdigit() and _is_number(value):
        return ":d"
    if not any(c.isalpha() for c in written):
        return ""
    for code in ("t", "u", "l"):
        change = CASES[code]
        if change is not None and change(value) == written:
            return f":{code}"
    return ""  # another mix of cases: as the prompt wrote it is the nearest


def relexicalize(text: str, values: list[str]) -> str | None:
    """The answer with every marker replaced by its value in its case; None when a marker
    names a slot the prompt did not have (the answer cannot be trusted)."""
    missing = False

    def value(match: re.Match[str]) -> str:
        nonlocal missing
        k = int(match.group(1))
        if not 1 <= k <= len(values):
            missing = True
            return ""
        change = CASES[match.group(2) or ""]
        return change(values[k - 1]) if change is not None else values[k - 1]

    out = _MARKER.sub(value, text)
    return None if missing else out


def delexicalize_row(row: dict[str, Any], slots: Slots) -> dict[str, Any]:
    """A dataset row as the student trains on it: slots in the prompt and in the answer."""
    messages, values = delexicalize_messages(json.loads(row["messages"]), slots)
    answer = delexicalize_answer(row.get("answer_text") or "", values)
    return row | {
        "messages": json.dumps(messages),
        "answer_text": answer,
        "answer": json.dumps({"role": "assistant", "content": answer}),
        "teacher_logprobs": None,  # the teacher's tokens are not the student's any more
    }


def save_slots(folder: Path, slots: Slots) -> None:
    (folder / FILE).write_text(json.dumps(slots.to_json()))


def read_slots(folder: Path) -> Slots | None:
    """The student's slots, or None for a student without them."""
    try:
        return Slots.from_json(json.loads((folder / FILE).read_text()))
    except FileNotFoundError:
        return None
