"""Copy drills: pretraining text that can only be predicted by copying from earlier in context.

A tiny base pretrained on a route's own text learns its templates and its names by heart; its
students then write a known name, or an invented one, where an unseen name belongs (issue 17).
Mixed into the tiny base's pretraining, these drills make copying the cheapest way to lower
the loss: a turn holds strings the model cannot have seen (random letters, long numbers, other
scripts, spans of the route's own text) and the next turn repeats them, as written or in a
named case ("title: marta kowalski" -> "Marta Kowalski"), so the heads that attend to an earlier
copy of the current token and predict the one after it (induction heads) form before any route
is learned.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence

from retrain.augment import odd_word

# How the answer turn writes what the prompt turn holds: the drill names it, so the target is
# never ambiguous.
_CASES = {
    "copy": lambda s: s,
    "title": str.title,
    "lower": str.lower,
    "upper": str.upper,
}


def copy_drill(rng: random.Random, route_words: Sequence[str]) -> str:
    """One drill in the tiny chat template: a user turn with a few strings among filler words
    (the strings marked <...> when there is filler), then the assistant turn with the same
    strings in order, in the case the drill names, separated by " | "."""
    strings = [_string(rng, route_words) for _ in range(rng.randint(1, 4))]
    case = rng.choice(["copy", "copy", "title", "lower", "upper"])
    filler = [rng.choice(route_words) for _ in range(rng.randint(0, 3))] if route_words else []
    parts = [(text, True) for text in strings] + [(word, False) for word in filler]
    rng.shuffle(parts)
    prompt = " ".join(f"<{text}>" if marked and filler else text for text, marked in parts)
    answer = " | ".join(_CASES[case](text) for text, marked in parts if marked)
    return f"<|user|>\n{case}: {prompt}<|end|>\n<|assistant|>\n{answer}<|end|>\n"


def _string(rng: random.Random, route_words: Sequence[str]) -> str:
    draw = rng.random()
    if draw < 0.2 and route_words:
        start = rng.randrange(len(route_words))
        return " ".join(route_words[start : start + rng.randint(1, 3)])
    if draw < 0.35:
        return str(rng.randint(0, 10 ** rng.randint(1, 9)))
    words = [odd_word(rng) for _ in range(rng.randint(1, 3))]
    return " ".join(w.capitalize() if rng.random() < 0.5 else w for w in words)


def route_words(texts: Sequence[str], limit: int = 5000) -> list[str]:
    """Words of the route's text, for drills that copy what the route itself says."""
    words: list[str] = []
    for text in texts:
        words.extend(re.findall(r"[^\W_]+", text))
        if len(words) >= limit:
            break
    return words[:limit]
