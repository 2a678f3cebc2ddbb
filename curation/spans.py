"""Rare spans of prompts: the names, numbers and rare words a student may never have seen.

Live traffic names products, people, places and order numbers the training data never held,
and a student that learnt the known ones by heart can be confidently wrong on new ones
(shared/FINDINGS.md, "Students and unseen names"). Curation holds out whole groups of these
spans so that eval has a `novel` slice (`curation.novel`), and retrain substitutes them to
teach invariance (`retrain.augment`). Both read the spans found here.

Detectors, each judged against the whole route's prompts (what a word looks like elsewhere in
the corpus says more than its own shape):

- ``capitalised``: title-case words (runs of them: "New York") whose lowercase form never
  occurs in the corpus. "Please" at a sentence start is not a name, since "please" is seen
  elsewhere; "Ana" is. All-caps words ("ASAP", "URGENT") are left out: they are emphasis far
  more often than entities, and substituting one would change what the prompt means.
- ``numbers``: tokens holding a digit (order numbers, SKUs, amounts, "A12-B3").
- ``rare_words``: lowercase words of 3+ letters in at most `rare_word_share` of the prompts.
- ``slot_words``: rare words that fill a slot: some context (the words either side) where
  they occur is filled by at least `slot_min_fillers` different words ("the ___ arrived").
  This tells "the kettle arrived broken" (kettle is one of many fillers) from "is it
  waterproof" (a template word, rare only because its template is).
- ``copied``: runs of prompt words the teacher's answer copies, whatever their case ("marta
  kowalski" in the message, "Marta Kowalski" in the JSON), and number words whose value the
  answer holds ("three" -> 3). A run of letters counts only when the route's answers hold it
  almost only where the prompt does too (`copy_consistency`): a label word the teacher also
  writes for prompts that never say it ("refund" for "money back") is a class, not a copy.
  Needs the answers; without them it finds nothing. On extraction routes this finds the names
  other detectors miss: a name written in lower case once is not "capitalised" anywhere.

Which detectors curation uses is `CurationSettings.span_detectors`; measured in
bench/novel_names.py (README, Benchmarks).
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

DETECTORS = ("capitalised", "numbers", "rare_words", "slot_words", "copied")
NAME, NUMBER, WORD = "name", "number", "word"

_TOKEN = re.compile(r"\w*\d(?:[\w-]|[.,]\d)*|[A-Za-z][A-Za-z'’-]*|\S")
_TITLE = re.compile(r"^[A-Z][a-z][A-Za-z'’-]*$")
_LOWER_WORD = re.compile(r"^[a-z][a-z'’-]{2,}$")
_NUMBER = re.compile(r"^\D*\d\D*\d\D*\d")  # three digits or more: ids, amounts, not "2fa"
_SENTENCE_END = frozenset(".!?")
MAX_RUN = 3  # longer runs of rare words are template phrases, not names of things
MAX_COPY_RUN = 6  # longest run of prompt words taken as one copied span
COPY_CONSISTENCY = 0.9  # share of answers holding a run whose prompt holds it too
NUMBER_WORDS = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
    "nineteen", "twenty",
)  # fmt: skip
_WORD_SPAN = re.compile(r"\w+(?:[.'’-]\w+)*")


@dataclass(frozen=True)
class Span:
    """One rare span of a prompt: its kind (name, number, word) and its text as written."""

    kind: str
    text: str

    @property
    def key(self) -> str:
        """The group a span belongs to: its kind and case-folded text."""
        return f"{self.kind}:{self.text.casefold()}"

    def to_json(self) -> list[str]:
        return [self.kind, self.text]


def tokens(text: str) -> list[str]:
    """Words, digit-holding tokens and single punctuation marks, in order."""
    return _TOKEN.findall(text)


@dataclass
class _Corpus:
    """What the detectors need to know about the whole route's prompts."""

    names: set[str]  # title-case words never seen lowercase, seen mid-sentence at least once
    rare: set[str]  # lowercase words in at most rare_word_share of the prompts
    slot_runs: dict[str, int]  # runs of rare words found mostly in slots: times in a slot


def _initial(toks: list[str], i: int) -> bool:
    return i == 0 or toks[i - 1] in _SENTENCE_END


def _runs(toks: list[str], rare: set[str]) -> list[tuple[int, int]]:
    """(start, end) of each maximal run of rare lowercase words."""
    out, i = [], 0
    while i < len(toks):
        if toks[i] in rare:
            j = i + 1
            while j < len(toks) and toks[j] in rare:
                j += 1
            out.append((i, j))
            i = j
        else:
            i += 1
    return out


def _sub_runs(
    toks: list[str], lowered: list[str], rare: set[str]
) -> list[tuple[str, tuple[str, str]]]:
    """Every run of up to MAX_RUN rare words inside a maximal run, with its context."""
    out = []
    for start, end in _runs(toks, rare):
        for i in range(start, end):
            for j in range(i + 1, min(end, i + MAX_RUN) + 1):
                context = (lowered[i - 1] if i else "^", lowered[j] if j < len(toks) else "$")
                out.append((" ".join(toks[i:j]), context))
    return out


def _corpus(texts: Sequence[list[str]], rare_word_share: float, min_fillers: int) -> _Corpus:
    lowercase_seen: set[str] = set()
    mid_sentence: set[str] = set()
    df: Counter[str] = Counter()
    for toks in texts:  # C-level filters: this loop sees every token of the route
        lowercase_seen.update(filter(str.islower, toks))
        if _SENTENCE_END.isdisjoint(toks[:-1]):
            mid_sentence.update(toks[1:])
        else:
            mid_sentence.update(t for i, t in enumerate(toks) if not _initial(toks, i))
        df.update(set(filter(_LOWER_WORD.match, toks)))
    names = {t for t in mid_sentence if _TITLE.match(t) and t.lower() not in lowercase_seen}
    limit = max(1.0, rare_word_share * len(texts))
    rare = {w for w, n in df.items() if n <= limit}
    # A slot is a context (the tokens either side) that several different runs of rare words
    # fill: "the ___ arrived". A run found mostly in slots names a thing (an item, a place);
    # a template word is rare only because its template is, and has one filler per context.
    # Every sub-run counts, so "kettle" in "is the kettle waterproof" is found as well as
    # "running shoes" in "the running shoes is".
    fillers: dict[tuple[str, str], set[str]] = defaultdict(set)
    seen_in: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for toks in texts:
        lowered = [t.lower() for t in toks]
        for run, context in _sub_runs(toks, lowered, rare):
            fillers[context].add(run)
            seen_in[run].append(context)
    slots = {c for c, runs in fillers.items() if len(runs) >= min_fillers}
    slot_runs = {
        run: sum(c in slots for c in contexts) for run, contexts in seen_in.items()
        if 2 * sum(c in slots for c in contexts) >= len(contexts)
    }  # fmt: skip
    return _Corpus(names, rare, slot_runs)


def find_spans(
    texts: Sequence[str],
    detectors: Sequence[str],
    rare_word_share: float = 0.05,
    slot_min_fillers: int = 5,
    answers: Sequence[str] | None = None,
) -> list[list[Span]]:
    """The rare spans of each text (unique per text, in order of appearance).

    `answers` (the teacher's answer to each text) feed the ``copied`` detector."""
    unknown = sorted(set(detectors) - set(DETECTORS))
    if unknown:
        raise ValueError(f"unknown span detector(s) {unknown}; known: {list(DETECTORS)}")
    toks = [tokens(t) for t in texts]
    corpus = _corpus(toks, rare_word_share, slot_min_fillers)
    copied: list[list[Span]] = [[] for _ in texts]
    if "copied" in detectors and answers is not None:
        copied = copied_spans(texts, answers)
    return [
        _spans_of(doc, corpus, set(detectors), first)
        for doc, first in zip(toks, copied, strict=True)
    ]


def copied_spans(texts: Sequence[str], answers: Sequence[str]) -> list[list[Span]]:
    """Each text's runs of words that its answer copies (see ``copied`` in the docstring).

    Linear in the rows: one pass finds each row's candidate runs, a second counts, for those
    runs only, the answers holding each and the rows whose prompt holds it too."""
    folded = [_fold(a) for a in answers]
    candidates = [_copied_runs(t, a) for t, a in zip(texts, folded, strict=True)]
    keys = {_fold(run) for runs in candidates for run in runs}
    holding: Counter[str] = Counter()
    echoed: Counter[str] = Counter()
    for text, answer in zip(texts, folded, strict=True):
        in_answer = _ngrams(answer) & keys
        holding.update(in_answer)
        if in_answer:
            # the text's n-grams, as one string to search: a run is an n-gram of the text
            # when it sits between spaces there (words hold no spaces)
            joined = " " + " ".join(m.group() for m in _WORD_SPAN.finditer(_fold(text))) + " "
            echoed.update(k for k in in_answer if f" {k} " in joined)
    out: list[list[Span]] = []
    for runs in candidates:
        spans = []
        for run in runs:
            key = _fold(run)
            if _consistent(key, holding[key], echoed[key]):
                spans.append(Span(NUMBER if _is_number(run) else NAME, run))
        out.append(spans)
    return out


def _ngrams(text: str) -> set[str]:
    """Every run of up to MAX_COPY_RUN words of `text`, as the copied runs are keyed."""
    words = [m.group() for m in _WORD_SPAN.finditer(text)]
    return {
        " ".join(words[i:j]) for i in range(len(words))
        for j in range(i + 1, min(len(words), i + MAX_COPY_RUN) + 1)
    }  # fmt: skip


def _fold(text: str) -> str:
    return " ".join(text.casefold().split())


def _holds(haystack: str, needle: str) -> bool:
    """`needle` occurs in `haystack` as whole words (both folded)."""
    start = haystack.find(needle)
    while start >= 0:
        end = start + len(needle)
        before = haystack[start - 1] if start else " "
        after = haystack[end] if end < len(haystack) else " "
        if not (before.isalnum() or before == "_") and not (after.isalnum() or after == "_"):
            return True
        start = haystack.find(needle, start + 1)
    return False


def _copied_runs(text: str, answer: str) -> list[str]:
    """Maximal runs of the text's words (up to MAX_COPY_RUN) found whole in the answer, and
    number words whose digits the answer holds."""
    words = list(_WORD_SPAN.finditer(text))
    runs: list[str] = []
    i = 0
    while i < len(words):
        best = None
        for j in range(i, min(len(words), i + MAX_COPY_RUN)):
            if j > i and text[words[j - 1].end() : words[j].start()] != " ":
                break  # a run is words separated by single spaces ("Marta Kowalski")
            run = text[words[i].start() : words[j].end()]
            # A run held whole by the answer holds its shorter prefixes whole too (a space
            # follows them), so the first run the answer lacks ends the search: on a long
            # prompt and a short answer that is one look per word.
            if not _holds(answer, run.casefold()):
                break
            best = (run, j)
        if best is None:
            word = words[i].group().casefold()
            value = str(NUMBER_WORDS.index(word)) if word in NUMBER_WORDS else ""
            # "quick one: 1 lamp" says 1 in digits; "one" is then a word of the template
            if value and _holds(answer, value) and not _holds(_fold(text), value):
                runs.append(words[i].group())
            i += 1
        else:
            runs.append(best[0])
            i = best[1] + 1
    return runs


def _is_number(run: str) -> bool:
    return run.isdigit() or run.casefold() in NUMBER_WORDS


def _consistent(key: str, holding: int, echoed: int) -> bool:
    """A copy, not a label: numbers always; a letter run when the answers holding it almost
    all belong to prompts holding it too."""
    if key.isdigit() or key in NUMBER_WORDS:
        return True
    return len(key) >= 2 and holding > 0 and echoed >= COPY_CONSISTENCY * holding


def _spans_of(
    doc: list[str], corpus: _Corpus, detectors: set[str], copied: list[Span]
) -> list[Span]:
    found: list[Span] = list(copied)
    if "capitalised" in detectors:
        found += _names_in(doc, corpus)
    if "numbers" in detectors:
        found += [Span(NUMBER, t) for t in doc if _NUMBER.match(t)]
    if "rare_words" in detectors:
        found += [Span(WORD, t) for t in doc if t in corpus.rare]
    elif "slot_words" in detectors:
        found += _slot_runs_in(doc, corpus)
    unique: dict[str, Span] = {}
    copies = [_fold(c.text) for c in copied]
    for span in found:
        # A name another detector found inside a copied run is that run, not a group of its own.
        inside = any(_holds(c, _fold(span.text)) for c in copies)
        if span in copied or not inside:
            unique.setdefault(span.key, span)
    return list(unique.values())


def _slot_runs_in(doc: list[str], corpus: _Corpus) -> list[Span]:
    """The doc's slot runs, most often slotted first, never overlapping."""
    candidates = []
    for start, end in _runs(doc, corpus.rare):
        for i in range(start, end):
            for j in range(i + 1, min(end, i + MAX_RUN) + 1):
                count = corpus.slot_runs.get(" ".join(doc[i:j]))
                if count:
                    candidates.append((-count, j - i, i, j))
    taken: set[int] = set()
    chosen = []
    for _, _, i, j in sorted(candidates):
        if taken.isdisjoint(range(i, j)):
            taken.update(range(i, j))
            chosen.append((i, j))
    return [Span(WORD, " ".join(doc[i:j])) for i, j in sorted(chosen)]


def _names_in(doc: list[str], corpus: _Corpus) -> list[Span]:
    out, i = [], 0
    while i < len(doc):
        if doc[i] in corpus.names:
            j = i + 1
            while j < len(doc) and doc[j] in corpus.names:
                j += 1
            out.append(Span(NAME, " ".join(doc[i:j])))
            i = j
        else:
            i += 1
    return out


def spans_from_json(value: object) -> list[Span]:
    """Spans as stored in a dataset's `spans` column (a JSON list of [kind, text])."""
    if not isinstance(value, list):
        return []
    out = []
    for item in value:
        if isinstance(item, list) and len(item) == 2 and all(isinstance(x, str) for x in item):
            out.append(Span(item[0], item[1]))
    return out
