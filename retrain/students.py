"""The student contract: all that the proxy and the canary loop know of students.

- Where students live: ``data_dir/students/<route>/v<N>/`` (``base/`` holds the route's tiny
  base), written by the retrain job (`retrain.registry`) in one rename.
- Listing and status. The retrain job records its gate's verdict (``candidate`` or
  ``rejected``) in the manifest; from then on the canary loop alone writes the student's
  lifecycle status into ``status.json`` beside it (``shadow``, ``canary``, ``promoted``,
  ``rolled_back``, ``retired``). The route's current student is its promoted one, or none.
- Loading a student for generation (torch and transformers load with the first student).
- The prompt format training and serving share: a `Prompt` rendered with the base's chat
  template, ending where the assistant's answer starts.
- The agreement measures shadow comparisons and the retrain evaluation share.
- Confidence signals of an answer (from its tokens' logprobs) and the cascade rule: the
  retrain job calibrates a rule per student on eval (`retrain.cascade`) and writes it into
  ``eval.json``; the proxy applies it to every answer (an answer below it goes to the
  teacher). Both compute the signals here, so calibration and serving read the same numbers.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

CANDIDATE, REJECTED = "candidate", "rejected"
SHADOW, CANARY, PROMOTED = "shadow", "canary", "promoted"
ROLLED_BACK, RETIRED = "rolled_back", "retired"
# Statuses the canary loop may write; the gate's verdict is the manifest's own.
LIFECYCLE = frozenset({CANDIDATE, SHADOW, CANARY, PROMOTED, ROLLED_BACK, RETIRED})


# -- where students live -------------------------------------------------------------------


def students_root(data_dir: Path, route: str) -> Path:
    return data_dir / "students" / route


def base_dir(data_dir: Path, route: str) -> Path:
    """Where the route's tiny base lives."""
    return students_root(data_dir, route) / "base"


def student_dir(data_dir: Path, route: str, version: int) -> Path:
    return students_root(data_dir, route) / f"v{version}"


def read_manifest(path: Path) -> dict[str, Any]:
    manifest: dict[str, Any] = json.loads((path / "manifest.json").read_text())
    return manifest


def write_json(path: Path, value: Any) -> None:
    """Replace `path` with `value` as JSON in one rename (a reader never sees half a file)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(value, indent=2, default=str))
    os.replace(tmp, path)


# -- listing and status --------------------------------------------------------------------


@dataclass(frozen=True)
class StudentInfo:
    route: str
    version: int
    path: Path
    status: str
    created_at: str
    dataset_version: int | None
    method: str
    base: str
    exact_match: float | None
    gate_passed: bool
    gate_reasons: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        """The version as the canary and the served_by header name it, e.g. ``v3``."""
        return f"v{self.version}"

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "path": str(self.path)}


def versions_in(root: Path) -> list[int]:
    """Version numbers under a route's folder, staging ones included."""
    if not root.exists():
        return []
    out = []
    for child in root.iterdir():
        name = child.name.removeprefix(".").removesuffix(".staging")
        if name.startswith("v") and name[1:].isdigit():
            out.append(int(name[1:]))
    return sorted(out)


def list_students(data_dir: Path, route: str | None = None) -> list[StudentInfo]:
    """Published students, by route then version; `route=None` lists every route."""
    root = data_dir / "students"
    if not root.exists():
        return []
    routes = [route] if route else sorted(p.name for p in root.iterdir() if p.is_dir())
    out = []
    for name in routes:
        for version in versions_in(students_root(data_dir, name)):
            path = student_dir(data_dir, name, version)
            if (path / "manifest.json").exists():
                out.append(_info(name, version, path, read_manifest(path)))
    return out


def _info(route: str, version: int, path: Path, m: dict[str, Any]) -> StudentInfo:
    student_metrics = (m.get("metrics") or {}).get("student") or {}
    return StudentInfo(
        route=route,
        version=version,
        path=path,
        status=_status(path, m),
        created_at=m.get("created_at", ""),
        dataset_version=m.get("dataset_version"),
        method=m.get("method", ""),
        base=m.get("base", ""),
        exact_match=student_metrics.get("exact_match"),
        gate_passed=bool((m.get("gate") or {}).get("passed")),
        gate_reasons=[str(r) for r in (m.get("gate") or {}).get("reasons") or []],
    )


def _status(path: Path, manifest: dict[str, Any]) -> str:
    initial = str(manifest.get("status", "unknown"))
    if initial == REJECTED:
        return REJECTED  # the gate's verdict is final; no canary may take a rejected student
    try:
        return str(json.loads((path / "status.json").read_text())["status"])
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return initial


def set_status(data_dir: Path, route: str, version: int, status: str, reason: str = "") -> None:
    """Record a student's lifecycle status (the canary loop is the only caller)."""
    if status not in LIFECYCLE:
        raise ValueError(f"unknown student status {status!r}; use one of {sorted(LIFECYCLE)}")
    path = student_dir(data_dir, route, version)
    if not (path / "manifest.json").exists():
        raise FileNotFoundError(f"No student v{version} for route {route!r} in {path}.")
    now = datetime.now(UTC).isoformat(timespec="seconds")
    write_json(path / "status.json", {"status": status, "reason": reason, "updated_at": now})


def show_student(data_dir: Path, route: str, version: int) -> dict[str, Any]:
    """Manifest, status and eval report of one student; FileNotFoundError names what is
    missing."""
    path = student_dir(data_dir, route, version)
    if not (path / "manifest.json").exists():
        raise FileNotFoundError(
            f"No student v{version} for route {route!r}; `apprentice students list` shows them."
        )
    report_path = path / "eval.json"
    report = json.loads(report_path.read_text()) if report_path.exists() else None
    manifest = read_manifest(path)
    gate = manifest.get("gate") or {}
    verdict = {"passed": bool(gate.get("passed")), "reasons": gate.get("reasons") or []}
    return {"path": str(path), "status": _status(path, manifest), "verdict": verdict,
            "manifest": manifest, "eval": report}  # fmt: skip


def rejected_in_a_row(data_dir: Path, route: str) -> int:
    """How many of the route's newest students the gate refused, back to one it passed."""
    count = 0
    for info in reversed(list_students(data_dir, route)):
        if info.status != REJECTED:
            break
        count += 1
    return count


def retrain_verdict(data_dir: Path, route: str) -> dict[str, Any] | None:
    """The newest student's gate verdict when the gate refused it (what the canary status
    shows beside the route: why no student is coming, and that the next retrain trains more),
    else None."""
    students = list_students(data_dir, route)
    if not students or students[-1].status != REJECTED:
        return None
    newest = students[-1]
    return {
        "version": newest.name,
        "status": REJECTED,
        "reasons": newest.gate_reasons,
        "created_at": newest.created_at,
        "rejected_in_a_row": rejected_in_a_row(data_dir, route),
        "next": "the next retrain runs when the schedule's new rows arrive, with more steps "
        "(max_steps x (1 + rejections in a row), at most x3)",
    }


def current_student(data_dir: Path, route: str) -> StudentInfo | None:
    """The route's current student: the promoted one (the newest, should there be two), or
    None. Warm start and the retrain gate's "beat the current student" use it."""
    promoted = [s for s in list_students(data_dir, route) if s.status == PROMOTED]
    return promoted[-1] if promoted else None


# -- loading -------------------------------------------------------------------------------


def load_student(path: Path, merge: bool = True, device: str | None = None) -> tuple[Any, Any]:
    """A registered student ready for generation: (model in eval mode, tokenizer).

    LoRA students are loaded on their base and, with `merge`, folded into it for faster
    serving; full fine-tunes are loaded from the student folder itself. Blocking: call it off
    the event loop."""
    from retrain import models  # torch and transformers: loaded with the first student

    manifest = read_manifest(path)
    if manifest["method"] == "full":
        model, tokenizer = models.load_base(path, device=device)
    else:
        base = Path(manifest["base_path"])
        if manifest.get("base") == "tiny" and not base.exists():
            base = base_dir(path.parent.parent.parent, path.parent.name)  # moved data_dir
        model, tokenizer = models.load_base(base, device=device)
        model = models.with_adapter(model, path, trainable=False)
        if merge:
            model = model.merge_and_unload()
    model.eval()
    return model, tokenizer


# -- the prompt format ---------------------------------------------------------------------


@dataclass(frozen=True)
class Prompt:
    """A conversation up to the answer: messages with text content, and the tools offered."""

    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] | None = None

    @classmethod
    def from_chat(cls, messages: list[dict[str, Any]]) -> Prompt:
        """A chat request's messages, list content flattened to its text parts (the chat
        templates want strings)."""
        out = []
        for m in messages:
            content = m.get("content")
            if isinstance(content, list):
                content = "".join(
                    p.get("text", "")
                    for p in content
                    if isinstance(p, dict) and p.get("type") == "text"
                )
            out.append({**m, "content": content or ""})
        return cls(out)


def render_prompt(tokenizer: Any, prompt: Prompt) -> str:
    """The prompt in the base's chat template, ending where the assistant's answer starts."""
    text: str = tokenizer.apply_chat_template(
        prompt.messages, tools=prompt.tools, add_generation_prompt=True, tokenize=False
    )
    return text


def prompt_ids(tokenizer: Any, prompt: Prompt) -> list[int]:
    """Token ids of `render_prompt`: what training puts before the answer and serving feeds."""
    # The template already holds any BOS the base wants; adding special tokens would double it.
    ids: list[int] = tokenizer(render_prompt(tokenizer, prompt), add_special_tokens=False)[
        "input_ids"
    ]
    return ids


# -- agreement with the teacher ------------------------------------------------------------

WORD = re.compile(r"\w+|[^\w\s]")


def parse_json(text: str) -> Any:
    """The JSON value of `text`, or None when it is not a JSON object or array."""
    stripped = text.strip()
    if not stripped or stripped[0] not in "[{":
        return None
    try:
        return json.loads(stripped)
    except ValueError:
        return None


def normalise(text: str) -> str:
    """Whitespace collapsed; JSON re-serialised with sorted keys, because key order and
    spacing are not part of what the teacher meant."""
    value = parse_json(text)
    if value is not None:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return " ".join(text.split())


def exact_match(prediction: str, reference: str) -> bool:
    return normalise(prediction) == normalise(reference)


def token_f1(prediction: str, reference: str) -> float:
    """Bag-of-tokens F1 (words and punctuation) between normalised texts."""
    pred, ref = WORD.findall(normalise(prediction)), WORD.findall(normalise(reference))
    if not pred and not ref:
        return 1.0
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


# -- confidence signals and the cascade rule -----------------------------------------------

# mean/min over every answer token; value_*: over the tokens of JSON values only (the keys and
# punctuation of a structured answer are easy and drown the signal: FINDINGS "Students and
# unseen names"), or every token when the answer is not JSON.
SIGNALS = ("mean_logprob", "min_logprob", "value_mean_logprob", "value_min_logprob")
_SCALAR = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?|true|false|null")


def value_ranges(text: str) -> list[tuple[int, int]]:
    """Character ranges of the values (strings without their quotes, numbers, literals) of a
    JSON object or array; [] when `text` is not one."""
    if parse_json(text) is None:
        return []
    out, i = [], 0
    while i < len(text):
        c = text[i]
        if c == '"':
            j = i + 1
            while j < len(text) and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            k = j + 1
            while k < len(text) and text[k] in " \t\r\n":
                k += 1
            if k >= len(text) or text[k] != ":":  # not a key
                out.append((i + 1, j) if j > i + 1 else (i, j + 1))
            i = j + 1
        elif (match := _SCALAR.match(text, i)) is not None:
            out.append((i, match.end()))
            i = match.end()
        else:
            i += 1
    return out


def confidence_signals(tokens: Sequence[str], logprobs: Sequence[float]) -> dict[str, float]:
    """Every signal in SIGNALS for one answer, from its tokens (their text, in order, EOS left
    out) and their logprobs. An empty answer has no evidence: every signal is -inf."""
    if not logprobs:
        return dict.fromkeys(SIGNALS, -math.inf)
    ranges = value_ranges("".join(tokens))
    values, start = [], 0
    for token, logprob in zip(tokens, logprobs, strict=True):
        end = start + len(token)
        if any(a < end and start < b for a, b in ranges):
            values.append(logprob)
        start = end
    values = values or list(logprobs)
    return {
        "mean_logprob": sum(logprobs) / len(logprobs),
        "min_logprob": min(logprobs),
        "value_mean_logprob": sum(values) / len(values),
        "value_min_logprob": min(values),
    }


@dataclass(frozen=True)
class CascadeRule:
    """Serve the student's answer when `signal` >= `threshold`; otherwise the teacher answers."""

    signal: str
    threshold: float  # inf: the student serves nothing (no threshold met the target)
    # What eval predicts for live traffic under this rule (cross-validated); None: unknown.
    coverage: float | None = None
    agreement: float | None = None

    def serves(self, signals: Mapping[str, float]) -> bool:
        return signals.get(self.signal, -math.inf) >= self.threshold


def read_cascade(path: Path) -> CascadeRule | None:
    """The cascade rule a student's eval.json holds, or None (an older student, or no eval)."""
    try:
        cascade = json.loads((path / "eval.json").read_text()).get("cascade") or {}
    except (FileNotFoundError, ValueError, AttributeError):
        return None
    signal = cascade.get("signal")
    if signal not in SIGNALS:
        return None
    threshold = cascade.get("threshold")
    return CascadeRule(
        signal,
        math.inf if threshold is None else float(threshold),
        cascade.get("coverage"),
        cascade.get("agreement"),
    )
