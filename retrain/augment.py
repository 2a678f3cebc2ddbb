"""Augmentation: synthetic training rows that teach a student invariance to new names.

A student trained on seven product names learns them by heart and can be confidently wrong on
an eighth (shared/FINDINGS.md). For each training row with rare spans (`curation.spans`: the
dataset's `spans` column, or found here for datasets without it), a synthetic row replaces
every span with another of its kind: one of the route's own (another product it names) or a
made-up one of the same shape (a pseudo-word, a number with the same digits pattern). Where a
replaced span appears in the teacher's answer it is replaced there too, consistently (the
answer copies the span); with `relabel = "teacher"` the teacher answers the new prompt
instead, within `teacher_budget_usd`.

Filters drop a synthetic row whose prompt already exists, whose answer stopped being JSON,
whose substitute appears anywhere in eval (eval must stay unseen), or in which no span could be
replaced. Rows are tagged (`synthetic`), weighted, and never enter eval.
"""

from __future__ import annotations

import json
import logging
import random
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from curation.settings import CurationSettings
from curation.spans import NAME, NUMBER, NUMBER_WORDS, Span, find_spans, spans_from_json
from retrain.settings import AugmentSettings
from retrain.students import parse_json

log = logging.getLogger("retrain")

_CONSONANTS = "bdfgklmnprstvz"
_VOWELS = "aeiou"


@dataclass(frozen=True)
class Label:
    """The teacher's answer to a synthetic prompt, and what it cost."""

    text: str
    cost_usd: float


# messages -> the teacher's answer (raises on failure; the row is then dropped)
Relabel = Callable[[list[dict[str, Any]]], Label]


@dataclass
class Augmented:
    rows: list[dict[str, Any]] = field(default_factory=list)
    dropped: Counter[str] = field(default_factory=Counter)
    kinds: Counter[str] = field(default_factory=Counter)  # spans replaced, by kind
    teacher_calls: int = 0
    teacher_cost_usd: float = 0.0
    relabelled_by: str = "copy"  # what labelled the rows: "copy" or "teacher"

    def counts(self, settings: AugmentSettings) -> dict[str, Any]:
        """What the student's manifest records about augmentation."""
        return {
            "enabled": settings.enabled,
            "synthetic_rows": len(self.rows),
            "relabel": settings.relabel,
            "labelled_by": self.relabelled_by,
            "vocabulary": settings.vocabulary,
            "spans_replaced": dict(sorted(self.kinds.items())),
            "dropped": dict(sorted(self.dropped.items())),
            "teacher_calls": self.teacher_calls,
            "teacher_cost_usd": round(self.teacher_cost_usd, 6),
        }


def user_text(row: dict[str, Any]) -> str:
    """The prompt text spans are found in: every non-system message's text."""
    parts = []
    for message in json.loads(row["messages"]):
        if message.get("role") in ("system", "developer"):
            continue
        content = message.get("content")
        if isinstance(content, str):
            parts.append(content)
    return "\n".join(parts)


def row_spans(rows: Sequence[dict[str, Any]]) -> list[list[Span]]:
    """Each row's spans from the dataset, or found across `rows` when the dataset has none."""
    if rows and all(r.get("spans") is not None for r in rows):
        return [spans_from_json(json.loads(r["spans"])) for r in rows]
    defaults = CurationSettings()
    return find_spans(
        [user_text(r) for r in rows],
        defaults.span_detectors,
        defaults.rare_word_share,
        defaults.slot_min_fillers,
        [r.get("answer_text") or "" for r in rows],
    )


def augment(
    train_rows: Sequence[dict[str, Any]],
    eval_rows: Sequence[dict[str, Any]],
    settings: AugmentSettings,
    seed: int = 0,
    relabel: Relabel | None = None,
) -> Augmented:
    """Synthetic rows made from `train_rows` (see the module docstring)."""
    out = Augmented()
    if not settings.enabled or not train_rows:
        return out
    rng = random.Random(seed)
    spans = row_spans(train_rows)
    vocabulary = _vocabulary(spans)
    unseen = _eval_words(eval_rows)  # substitutes must never show what eval holds
    prompts = {user_text(r) for r in [*train_rows, *eval_rows]}
    if settings.relabel == "teacher" and relabel is None:
        log.warning("augment.relabel is 'teacher' but no teacher is reachable: copying labels")
    elif settings.relabel == "teacher":
        out.relabelled_by = "teacher"
    for row, row_spans_ in zip(train_rows, spans, strict=True):
        for copy in range(settings.copies):
            made = _synthetic(row, row_spans_, vocabulary, unseen, settings, rng, out)
            if made is None:
                continue
            text = user_text(made)
            if text in prompts:
                out.dropped["duplicate_prompt"] += 1
                continue
            ask = relabel if settings.relabel == "teacher" else None
            if ask is not None and not _relabel(made, ask, settings, out):
                continue
            prompts.add(text)
            made["request_id"] = f"{row['request_id']}~aug{copy + 1}"
            out.rows.append(made)
    return out


def _synthetic(
    row: dict[str, Any],
    spans: list[Span],
    vocabulary: dict[str, list[str]],
    unseen: set[str],
    settings: AugmentSettings,
    rng: random.Random,
    out: Augmented,
) -> dict[str, Any] | None:
    if not spans:
        return None
    answer = json.loads(row["answer"]) if row.get("answer") else {}
    if answer.get("tool_calls") or not row.get("answer_text"):
        out.dropped["no_text_answer"] += 1
        return None
    messages = json.loads(row["messages"])
    answer_text: str = row["answer_text"]
    replaced = 0
    for span in spans:
        # A span the answer copies gets shapes never seen too (the student must copy, not
        # recall); one it does not copy keeps its shape, as a classifier needs no more.
        copied = span.text.casefold() in answer_text.casefold()
        substitute = _substitute(span, vocabulary, unseen, settings.vocabulary, rng, copied)
        if substitute is not None and _replace_in_prompt(messages, span.text, substitute):
            answer_text = replace_span(answer_text, *_in_answer(span.text, substitute))
            replaced += 1
            out.kinds[span.kind] += 1
    if not replaced:
        out.dropped["no_span_replaced"] += 1
        return None
    if parse_json(row["answer_text"]) is not None and parse_json(answer_text) is None:
        out.dropped["answer_not_json"] += 1
        return None
    weight = 1.0 if row.get("weight") is None else float(row["weight"])
    return row | {
        "messages": json.dumps(messages),
        "answer": json.dumps({"role": "assistant", "content": answer_text}),
        "answer_text": answer_text,
        "teacher_logprobs": None,  # the teacher's tokens no longer match the answer
        "weight": weight * settings.weight,
        "slice": None,
        "synthetic": True,
    }


def _in_answer(span: str, substitute: str) -> tuple[str, str]:
    """What to replace in the answer: the span itself, or for a number word ("three") the
    digits the teacher wrote for it (3)."""
    old, new = span.casefold(), substitute.casefold()
    if old in NUMBER_WORDS and new in NUMBER_WORDS:
        return str(NUMBER_WORDS.index(old)), str(NUMBER_WORDS.index(new))
    return span, substitute


def _replace_in_prompt(messages: list[dict[str, Any]], span: str, substitute: str) -> bool:
    """Replace `span` in every non-system message; False when it occurs in none."""
    changed = False
    for message in messages:
        if message.get("role") in ("system", "developer"):
            continue
        if isinstance(message.get("content"), str):
            new = replace_span(message["content"], span, substitute)
            changed |= new != message["content"]
            message["content"] = new
    return changed


def _relabel(
    row: dict[str, Any], relabel: Relabel, settings: AugmentSettings, out: Augmented
) -> bool:
    """Ask the teacher for the row's answer while the budget lasts; False drops the row."""
    if out.teacher_cost_usd >= settings.teacher_budget_usd:
        out.dropped["over_teacher_budget"] += 1
        return False
    try:
        label = relabel(json.loads(row["messages"]))
    except Exception as exc:  # a failed call costs one synthetic row, never the retrain
        log.warning("teacher relabel failed: %s", exc)
        out.dropped["teacher_error"] += 1
        return False
    out.teacher_calls += 1
    out.teacher_cost_usd += label.cost_usd
    row["answer_text"] = label.text
    row["answer"] = json.dumps({"role": "assistant", "content": label.text})
    return True


def replace_span(text: str, span: str, substitute: str) -> str:
    """`text` with every whole-word occurrence of `span`, in any case, replaced by `substitute`
    written in that occurrence's case: "MARTA KOWALSKI" -> "QERV ZILPA", "marta kowalski" ->
    "qerv zilpa", "Marta Kowalski" -> "Qerv Zilpa" (a teacher that title-cases a name it
    copies from a lower-case message does so for the substitute too)."""
    pattern = rf"(?<!\w){re.escape(span)}(?!\w)"
    return re.sub(pattern, lambda m: _in_case_of(m.group(), substitute), text, flags=re.I)


def _in_case_of(occurrence: str, substitute: str) -> str:
    letters = [c for c in occurrence if c.isalpha()]
    if not letters:
        return substitute
    if len(letters) > 1 and all(c.isupper() for c in letters):
        return substitute.upper()
    if all(c.islower() for c in letters):
        return substitute.lower()
    if occurrence == occurrence.title():
        return substitute.title()
    return substitute


def _vocabulary(spans: list[list[Span]]) -> dict[str, list[str]]:
    by_kind: dict[str, set[str]] = {}
    for row in spans:
        for span in row:
            by_kind.setdefault(span.kind, set()).add(span.text)
    return {kind: sorted(values) for kind, values in by_kind.items()}


def _eval_words(rows: Sequence[dict[str, Any]]) -> set[str]:
    words: set[str] = set()
    for row in rows:
        words.update(w.casefold() for w in re.findall(r"\w+", user_text(row)))
    return words


def _substitute(
    span: Span,
    vocabulary: dict[str, list[str]],
    unseen: set[str],
    source: str,
    rng: random.Random,
    novel_shapes: bool = False,
) -> str | None:
    """Another span of the same kind, or None when none can be found in a few tries."""
    worded = span.text.casefold() in NUMBER_WORDS
    own = [
        v for v in vocabulary.get(span.kind, [])
        if v.casefold() != span.text.casefold() and (v.casefold() in NUMBER_WORDS) == worded
    ]  # fmt: skip
    for _ in range(8):
        from_route = source == "route" or (source == "both" and rng.random() < 0.5)
        if from_route and own:
            candidate = rng.choice(own)
        elif from_route and span.kind != NUMBER:
            return None  # the route has no other span of this kind to offer
        else:
            candidate = made_up(span, rng, novel_shapes)
        words = {w.casefold() for w in re.findall(r"\w+", candidate)}
        fresh = candidate.casefold() != span.text.casefold()
        if fresh and (span.kind == NUMBER or words.isdisjoint(unseen)):
            return candidate
    return None


def made_up(span: Span, rng: random.Random, novel_shapes: bool = False) -> str:
    """A new span of the same shape (a pseudo-word per word, capitalised for names; the same
    digit pattern with new digits); with `novel_shapes`, half the time of a shape the route
    never shows (random letters, long words, letters and digits, other scripts, long numbers),
    so that the only way to get a copying answer right is to copy what the prompt says."""
    if span.text.casefold() in NUMBER_WORDS:
        return rng.choice([w for w in NUMBER_WORDS[1:] if w != span.text.casefold()])
    if not novel_shapes or rng.random() < 0.5:
        return _same_shape(span, rng)
    if span.kind == NUMBER:
        return str(rng.randint(1, 9)) + "".join(str(rng.randint(0, 9)) for _ in range(
            rng.randint(0, 7)))  # fmt: skip
    count = max(1, len(span.text.split()) + rng.choice((-1, 0, 0, 1)))
    words = [_odd_word(rng) for _ in range(count)]
    return " ".join(w.capitalize() if span.kind == NAME else w.lower() for w in words)


def _same_shape(span: Span, rng: random.Random) -> str:
    if span.kind == NUMBER:
        digits = [
            str(rng.randint(1 if i == 0 and c != "0" else 0, 9)) if c.isdigit() else c
            for i, c in enumerate(span.text)
        ]
        return "".join(digits)
    words = []
    for word in span.text.split():
        syllables = max(1, min(4, round(len(word) / 2.5)))
        made = "".join(rng.choice(_CONSONANTS) + rng.choice(_VOWELS) for _ in range(syllables))
        words.append(made.capitalize() if span.kind == NAME else made)
    return " ".join(words)


_LETTERS = "abcdefghijklmnopqrstuvwxyz"
_OTHER_SCRIPTS = ["äöüßéèñçøåł", "αβγδεζηθικλμνξοπρστυφχψω", "абвгдежзийклмнопрстуфхцчшщыэюя"]


def _odd_word(rng: random.Random) -> str:
    """One word of a shape no route is likely to hold."""
    draw = rng.random()
    if draw < 0.5:  # random letters, short or long
        return "".join(rng.choice(_LETTERS) for _ in range(rng.randint(2, 12)))
    if draw < 0.7:  # letters with digits ("x7qk2")
        pool = _LETTERS + "0123456789"
        return rng.choice(_LETTERS) + "".join(rng.choice(pool) for _ in range(rng.randint(2, 7)))
    if draw < 0.85:  # Latin letters with diacritics mixed in
        pool = _LETTERS * 2 + _OTHER_SCRIPTS[0]
        return "".join(rng.choice(pool) for _ in range(rng.randint(3, 9)))
    script = rng.choice(_OTHER_SCRIPTS[1:])
    return "".join(rng.choice(script) for _ in range(rng.randint(3, 9)))
