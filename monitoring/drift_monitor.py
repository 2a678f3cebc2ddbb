"""Drift scoring: sliding windows of live traffic per route, scored against the reference.

The proxy feeds it (`observe_prompt`, `observe_output`, `observe_shadow`) where a request is
answered. A prompt is only queued there; `drain` tokenises the queue into the windows, off the
request path. The canary loop drains every tick, scores the routes that are `due` (each on its
own `[routes.drift] interval_s`) with `evaluate`, which exports
`apprentice_drift_score{route,method}`, and acts on the report.
"""

from __future__ import annotations

import time
from array import array
from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from monitoring.drift import (
    Reference,
    disagreement_rate,
    length_psi,
    prompt_text,
    prompt_tokens,
    token_jsd,
    unseen_rate,
)
from monitoring.metrics import Metrics
from monitoring.settings import THRESHOLD_KEYS, DriftSettings

Level = Literal["ok", "warn", "act"]
METHODS = tuple(THRESHOLD_KEYS)
INBOX_SIZE = 100_000  # prompts queued between drains; the oldest go first when it is full


@dataclass(frozen=True)
class DriftReport:
    """One drift run of one route: its scores, how each compares to its thresholds, and
    which actions the route's settings ask for."""

    route: str
    at: float
    prompts: int
    scores: Mapping[str, float]
    levels: Mapping[str, Level]
    pause_canary: bool
    trigger_retrain: bool

    @property
    def acting(self) -> list[str]:
        """Methods whose score is past its act threshold."""
        return [m for m, level in self.levels.items() if level == "act"]


# Tokens of one prompt that count in the token profile (its length counts them all): a
# window of 10-200 KB prompts held every token of each, 1-4 MB a prompt, and grew RSS past
# 1.6 GB. The first 8,192 tokens of a prompt (30-40 KB of text) profile it well enough.
MAX_PROFILED_TOKENS = 8192


@dataclass(frozen=True)
class _Profile:
    """One prompt's token counts, compact: its distinct tokens joined by spaces (no token
    holds one) and their counts; a Counter of them cost ~100 bytes a token beside the text."""

    words: str
    counts: array[int]

    @classmethod
    def of(cls, counts: Counter[str]) -> _Profile:
        return cls(" ".join(counts), array("I", counts.values()))

    def items(self) -> Iterator[tuple[str, int]]:
        return zip(self.words.split(" "), self.counts, strict=True)


@dataclass
class _Window:
    """Live traffic of one route, with running token counts so scoring never re-tokenises.

    `tokens` holds only the tokens of the prompts in the window: a token whose last prompt
    leaves is deleted, not kept at zero (prompts full of ids and numbers grew it for ever)."""

    size: int
    prompts: deque[_Profile] = field(init=False)
    lengths: deque[int] = field(init=False)
    outputs: deque[int] = field(init=False)
    verdicts: deque[str] = field(init=False)
    tokens: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self.prompts = deque()
        self.lengths = deque(maxlen=self.size)
        self.outputs = deque(maxlen=self.size)
        self.verdicts = deque(maxlen=self.size)

    def add_prompt(self, tokens: list[str]) -> None:
        counts = Counter(tokens[:MAX_PROFILED_TOKENS])
        if len(self.prompts) == self.size:
            self._forget(self.prompts.popleft())
        self.prompts.append(_Profile.of(counts))
        self.tokens.update(counts)
        self.lengths.append(len(tokens))

    def _forget(self, profile: _Profile) -> None:
        tokens = self.tokens
        for word, count in profile.items():
            left = tokens[word] - count
            if left > 0:
                tokens[word] = left
            else:
                tokens.pop(word, None)


class DriftMonitor:
    """Scores each route's live window against its reference and exports the scores."""

    def __init__(
        self,
        metrics: Metrics,
        settings: Mapping[str, DriftSettings],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._metrics = metrics
        self._settings = {r: s for r, s in settings.items() if s.enabled}
        self._clock = clock
        self._windows = {r: _Window(s.window_size) for r, s in self._settings.items()}
        self._references: dict[str, Reference] = {}
        self._latest: dict[str, DriftReport] = {}
        self._last_run: dict[str, float] = {}
        self._inbox: deque[tuple[str, Any]] = deque(maxlen=INBOX_SIZE)
        for route, s in self._settings.items():
            metrics.drift_interval.labels(route).set(s.interval_s)
            for method in METHODS:
                warn, act = s.thresholds(method)
                metrics.drift_threshold.labels(route, method, "warn").set(warn)
                metrics.drift_threshold.labels(route, method, "act").set(act)

    def set_reference(self, route: str, reference: Mapping[str, Any] | None) -> None:
        """Compare `route` against these statistics from now on (None stops scoring it)."""
        if route not in self._settings:
            return
        if reference is None:
            self._references.pop(route, None)
            self._clear_scores(route)
            return
        self._references[route] = Reference.parse(reference)

    def observe_prompt(self, route: str, messages: Any) -> None:
        """Queue one live request's messages for the route's window (cheap: tokenised later,
        by `drain`)."""
        if route in self._windows:
            self._inbox.append((route, messages))

    def drain(self) -> int:
        """Tokenise the queued prompts into their windows; returns how many."""
        drained = 0
        while self._inbox:
            route, messages = self._inbox.popleft()
            if isinstance(messages, list):
                self._windows[route].add_prompt(prompt_tokens(prompt_text(messages)))
                drained += 1
        return drained

    def observe_output(self, route: str, text: str) -> None:
        """Add one student answer, for the output-length PSI."""
        window = self._windows.get(route)
        if window is not None:
            window.outputs.append(len(prompt_tokens(text)))

    def observe_shadow(self, route: str, verdict: str) -> None:
        """Add one shadow comparison verdict (agree, disagree, error)."""
        window = self._windows.get(route)
        if window is not None:
            window.verdicts.append(verdict)

    def latest(self, route: str) -> DriftReport | None:
        """The route's last report, if it has been scored."""
        return self._latest.get(route)

    def evaluate(self, route: str) -> DriftReport | None:
        """Score one route now and export the scores; None if it has no reference."""
        reference = self._references.get(route)
        if reference is None:
            return None
        self.drain()
        settings, window, now = self._settings[route], self._windows[route], self._clock()
        scores = _scores(reference, window, settings)
        self._clear_scores(route)
        for method, value in scores.items():
            self._metrics.drift_score.labels(route, method).set(value)
        self._metrics.drift_window.labels(route).set(len(window.prompts))
        self._metrics.drift_last_run.labels(route).set(now)
        self._last_run[route] = now
        levels = {m: _level(v, *settings.thresholds(m)) for m, v in scores.items()}
        acting = any(level == "act" for level in levels.values())
        report = DriftReport(
            route=route,
            at=now,
            prompts=len(window.prompts),
            scores=scores,
            levels=levels,
            pause_canary=acting and settings.pause_canary,
            trigger_retrain=acting and settings.trigger_retrain,
        )
        self._latest[route] = report
        return report

    def due(self) -> list[str]:
        """Routes with a reference whose interval has passed since their last run."""
        now = self._clock()
        return [
            r
            for r in self._references
            if now - self._last_run.get(r, -float("inf")) >= self._settings[r].interval_s
        ]

    def _clear_scores(self, route: str) -> None:
        # A method without enough data this run must not keep showing last run's score.
        for method in METHODS:
            self._metrics.clear_drift(route, method)


def _scores(reference: Reference, window: _Window, settings: DriftSettings) -> dict[str, float]:
    scores: dict[str, float] = {}
    if len(window.prompts) >= settings.min_prompts:
        live = window.tokens
        scores["prompt_length_psi"] = length_psi(reference.prompt_length, list(window.lengths))
        scores["token_jsd"] = token_jsd(reference.top_tokens, reference.other_share, live)
        scores["unseen_token_rate"] = unseen_rate(reference.top_tokens, live)
    if reference.answer_length is not None and len(window.outputs) >= settings.min_prompts:
        # student answers against the teacher answers the student was trained on
        scores["output_length_psi"] = length_psi(reference.answer_length, list(window.outputs))
    judged = [v for v in window.verdicts if v != "error"]
    if len(judged) >= settings.min_shadow_pairs:
        rate = disagreement_rate(judged)
        if rate is not None:
            scores["disagreement_rate"] = rate
    return scores


def _level(value: float, warn: float, act: float) -> Level:
    if value > act:
        return "act"
    return "warn" if value > warn else "ok"
