"""The retrain job: one dataset version in, one registered (candidate or rejected) student out.

Steps: pick the dataset, get the base (building the route's tiny base on first use), evaluate
the untrained base and the current student on the eval split, add synthetic rows that replace
rare spans (`retrain.augment`), warm-start from the current adapter with a replay share of its
dataset, train, evaluate both eval slices, gate them, calibrate the cascade
(`retrain.assessment`), and publish the student folder in one rename.
"""

from __future__ import annotations

import json
import logging
import random
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from curation.dataset import dataset_versions
from curation.dataset import read_manifest as read_dataset_manifest
from retrain import examples as ex
from retrain import models, registry, students
from retrain.assessment import Assessment, assess, eval_json, evaluation_items
from retrain.augment import Augmented, Relabel, augment, replace_span, user_text
from retrain.evaluation import EvalReport, evaluate
from retrain.report import plot_cascade, plot_training, run_summary
from retrain.schedule import route_lock
from retrain.settings import RetrainSettings
from retrain.slots import Slots, delexicalize_row, read_slots, route_slots, save_slots
from retrain.tiny_base import build_tiny_base
from retrain.train import TrainResult, set_seed, train

log = logging.getLogger("retrain")


@dataclass(frozen=True)
class RetrainResult:
    route: str
    version: int
    path: Path
    status: str  # "candidate" or "rejected"
    passed: bool
    reasons: list[str]  # why the gate refused it; empty when it passed
    dataset_version: int
    metrics: dict[str, Any]  # the student's eval metrics
    base_metrics: dict[str, Any]  # the untrained base's, the floor
    current_metrics: dict[str, Any] | None  # the incumbent's on the same eval split
    train_seconds: float
    extra: dict[str, Any] = field(default_factory=dict)
    slices: dict[str, dict[str, Any]] = field(default_factory=dict)  # eval.json's slices
    cascade: dict[str, Any] = field(default_factory=dict)  # eval.json's cascade
    augment: dict[str, Any] = field(default_factory=dict)  # what augmentation added


@dataclass
class _Start:
    """What the run starts from: the base, and the incumbent it may warm-start from."""

    base_name: str
    base_path: Path
    current: students.StudentInfo | None
    warm_from: Path | None
    replay_rows: list[dict[str, Any]]
    progress: bool
    synthetic: Augmented = field(default_factory=Augmented)
    slots: Slots | None = None  # the route's slots, when its answers copy (retrain.slots)


def run_retrain(
    data_dir: Path,
    route: str,
    settings: RetrainSettings,
    *,
    dataset_version: int | None = None,
    base: str | None = None,
    method: str | None = None,
    progress: bool = True,
    relabel: Relabel | None = None,
) -> RetrainResult:
    """Train, evaluate, gate and register a student for `route` (see the module docstring).

    `settings` is the route's [routes.retrain]; `base` ("tiny" or a local HF model folder) and
    `method` ("lora" or "full") override it when given. `relabel` asks the teacher for the
    answers of synthetic prompts when `augment.relabel = "teacher"`. Raises RetrainBusy when
    the route is already retraining, FileNotFoundError when there is no dataset yet.
    """
    if base is not None or method is not None:
        update = {"base": base or settings.base, "method": method or settings.method}
        settings = RetrainSettings.model_validate({**settings.model_dump(), **update})
    version = _dataset_version(data_dir, route, dataset_version)
    settings = escalated(settings, students.rejected_in_a_row(data_dir, route))
    torch.set_num_threads(settings.num_threads)
    if not progress:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # the weight loading/saving bars
    with route_lock(data_dir, route):
        number, staging = registry.allocate(data_dir, route)
        handler = _file_log(staging / "train.log")
        try:
            result = _run(data_dir, route, settings, version, number, staging, progress, relabel)
        except BaseException:
            log.exception("retrain of %s failed", route)
            failed = staging.with_name(f".v{number}.failed-{int(time.time())}")
            staging.rename(failed)
            raise
        finally:
            log.removeHandler(handler)
            handler.close()
    return result


MAX_ESCALATION = 3  # the most a run after rejections multiplies the route's max_steps by


def escalated(settings: RetrainSettings, rejected: int) -> RetrainSettings:
    """The settings of a run after `rejected` refused students in a row: more steps (x(1+n),
    at most x3), as an operator would try next; the dataset grows by itself (the schedule's
    new rows). A max_seconds budget still bounds the run."""
    factor = min(MAX_ESCALATION, 1 + rejected)
    if factor == 1:
        return settings
    log.info("%d students refused in a row: training %dx the steps", rejected, factor)
    return settings.model_copy(update={"max_steps": settings.max_steps * factor})


def _dataset_version(data_dir: Path, route: str, wanted: int | None) -> int:
    versions = dataset_versions(data_dir, route)
    if not versions:
        raise FileNotFoundError(
            f"Route {route!r} has no dataset yet; run `apprentice curate --route {route}` first."
        )
    if wanted is not None and wanted not in versions:
        raise FileNotFoundError(
            f"Route {route!r} has no dataset v{wanted}; it has v{', v'.join(map(str, versions))}."
        )
    return versions[-1] if wanted is None else wanted


def _file_log(path: Path) -> logging.Handler:
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    return handler


def _run(
    data_dir: Path,
    route: str,
    settings: RetrainSettings,
    dataset_version: int,
    number: int,
    staging: Path,
    progress: bool,
    relabel: Relabel | None,
) -> RetrainResult:
    set_seed(settings.seed)
    train_rows = ex.read_split(data_dir, route, dataset_version, "train")
    eval_rows = ex.read_split(data_dir, route, dataset_version, "eval")
    novel_info = _novel_info(data_dir, route, dataset_version)
    log.info("route %s dataset v%d: %d train, %d eval rows", route, dataset_version,
             len(train_rows), len(eval_rows))  # fmt: skip
    start = _starting_point(data_dir, route, settings, train_rows, progress, novel_info)
    start.synthetic = augment(train_rows, eval_rows, settings.augment, settings.seed, relabel)
    log.info("augmentation: %s", start.synthetic.counts(settings.augment))
    start.slots = route_slots(train_rows, settings.slots, settings.base)
    if start.slots is not None:
        log.info("slots: %d template words", len(start.slots.template))
    model, tokenizer = models.load_base(start.base_path)
    base_report, current_report = _floors(model, tokenizer, eval_rows, settings, start)
    model, result = _train_and_save(
        model, tokenizer, train_rows, eval_rows, settings, start, staging
    )
    report = _evaluate(model, tokenizer, eval_rows, settings, start.slots)
    current_metrics = current_report.metrics if current_report else None
    assessment = assess(report, settings, current_metrics)
    verdict = assessment.verdict
    status = students.CANDIDATE if verdict.passed else students.REJECTED
    reports = {"student": report, "base": base_report, "current": current_report}
    manifest = _manifest(route, number, status, dataset_version, settings, start, result, reports)
    manifest["gate"] = {"passed": verdict.passed, "reasons": verdict.reasons}
    evaluation = eval_json(
        manifest["metrics"], manifest["gate"], report, assessment, settings, novel_info
    )
    manifest["slices"] = {k: _without_worst(v) for k, v in evaluation["slices"].items()}
    manifest["cascade"] = {k: evaluation["cascade"][k] for k in CASCADE_SUMMARY}
    _write_outputs(staging, manifest, evaluation, assessment, result, route, number)
    path = registry.publish(staging)
    # stderr: stdout stays free for a caller's --json output.
    print(run_summary(route, number, status, verdict.reasons, manifest), file=sys.stderr)
    return RetrainResult(
        route=route,
        version=number,
        path=path,
        status=status,
        passed=verdict.passed,
        reasons=verdict.reasons,
        dataset_version=dataset_version,
        metrics=report.metrics,
        base_metrics=base_report.metrics,
        current_metrics=current_metrics,
        train_seconds=result.seconds,
        extra={"steps": result.steps, "tokens": result.tokens, "replay": len(start.replay_rows)},
        slices=evaluation["slices"],
        cascade=evaluation["cascade"],
        augment=manifest["augment"],
    )


CASCADE_SUMMARY = ("signal", "threshold", "target_agreement", "coverage", "agreement", "slices")


def _floors(
    model: Any,
    tokenizer: Any,
    eval_rows: list[dict[str, Any]],
    settings: RetrainSettings,
    start: _Start,
) -> tuple[EvalReport, EvalReport | None]:
    """The untrained base's eval (the floor) and the current student's (the bar to beat)."""
    base_report = _evaluate(model, tokenizer, eval_rows, settings, start.slots)
    if start.current is None:
        return base_report, None
    cur_model, cur_tok = students.load_student(start.current.path)
    cur_slots = read_slots(start.current.path)
    current_report = _evaluate(cur_model, cur_tok, eval_rows, settings, cur_slots)
    del cur_model
    return base_report, current_report


def _without_worst(section: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in section.items() if k not in ("worst", "held_out")}


def _novel_info(data_dir: Path, route: str, version: int) -> dict[str, Any] | None:
    """The dataset manifest's account of its novel slice (None for older datasets)."""
    try:
        novel: dict[str, Any] | None = read_dataset_manifest(data_dir, route, version).get("novel")
    except (FileNotFoundError, ValueError):
        return None
    return novel


def _train_and_save(
    model: Any,
    tokenizer: Any,
    train_rows: list[dict[str, Any]],
    eval_rows: list[dict[str, Any]],
    settings: RetrainSettings,
    start: _Start,
    staging: Path,
) -> tuple[Any, TrainResult]:
    """Train, save the adapter (or full model) to staging, return the model to evaluate."""
    model = _trainable(model, settings, start)
    rows = train_rows + start.replay_rows + start.synthetic.rows
    if start.slots is not None:  # the student sees and writes slots, never the names in them
        rows = [delexicalize_row(r, start.slots) for r in rows]
        eval_rows = [delexicalize_row(r, start.slots) for r in eval_rows]
        save_slots(staging, start.slots)
    train_ex = [e for r in rows if (e := ex.build_example(tokenizer, r, settings.max_length))]
    eval_ex = [e for r in eval_rows if (e := ex.build_example(tokenizer, r, settings.max_length))]
    result = train(
        model, tokenizer, train_ex, eval_ex, eval_rows, settings, progress=start.progress
    )
    model.save_pretrained(staging)
    if settings.method == "full":
        tokenizer.save_pretrained(staging)
        return model, result
    # Evaluate what serving runs: the adapter merged into the base.
    return model.merge_and_unload(), result


def _evaluate(
    model: Any,
    tokenizer: Any,
    rows: list[dict[str, Any]],
    settings: RetrainSettings,
    slots: Slots | None,
) -> EvalReport:
    return evaluate(
        model, tokenizer, rows, settings.max_new_tokens, settings.latency_samples, slots
    )


def _starting_point(
    data_dir: Path,
    route: str,
    settings: RetrainSettings,
    train_rows: list[dict[str, Any]],
    progress: bool,
    novel_info: dict[str, Any] | None = None,
) -> _Start:
    if settings.base == "tiny":
        base_path = students.base_dir(data_dir, route)
        if not base_path.exists():
            build_tiny_base(base_path, train_rows, settings, progress)
    else:
        base_path = Path(settings.base).expanduser().resolve()
    current = students.current_student(data_dir, route)
    warm_from, replay = None, []
    if current is not None and settings.warm_start:
        manifest = students.read_manifest(current.path)
        same_base = Path(manifest["base_path"]).resolve() == base_path.resolve()
        if same_base and manifest["method"] == settings.method:
            warm_from = current.path
            replay = _replay(data_dir, route, manifest, train_rows, settings, novel_info)
    return _Start(settings.base, base_path, current, warm_from, replay, progress)


def _replay(
    data_dir: Path,
    route: str,
    manifest: dict[str, Any],
    train_rows: list[dict[str, Any]],
    settings: RetrainSettings,
    novel_info: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """A seeded sample of the previous dataset's rows not already in the new one, leaving out
    rows that name a span the new dataset holds out (its novel slice must stay unseen)."""
    previous = manifest.get("dataset_version")
    if previous is None or settings.replay_fraction == 0:
        return []
    try:
        old = ex.read_split(data_dir, route, int(previous), "train")
    except FileNotFoundError:
        log.warning("replay skipped: dataset v%s of %s is gone", previous, route)
        return []
    seen = {r["request_id"] for r in train_rows}
    held = [str(h["text"]) for h in (novel_info or {}).get("held_out", [])]
    old = [r for r in old if r["request_id"] not in seen and not _names_any(r, held)]
    k = min(len(old), int(len(train_rows) * settings.replay_fraction))
    return random.Random(settings.seed).sample(old, k)


def _names_any(row: dict[str, Any], spans: list[str]) -> bool:
    text = user_text(row)
    return any(replace_span(text, span, "\x00") != text for span in spans)


def _trainable(model: Any, settings: RetrainSettings, start: _Start) -> Any:
    if settings.method == "full":
        if start.warm_from is not None:
            model, _ = models.load_base(start.warm_from)
        model.requires_grad_(True)
        return model
    if start.warm_from is not None:
        return models.with_adapter(model, start.warm_from, trainable=True)
    return models.with_lora(model, settings)


def _manifest(
    route: str,
    number: int,
    status: str,
    dataset_version: int,
    settings: RetrainSettings,
    start: _Start,
    result: TrainResult,
    reports: dict[str, EvalReport | None],
) -> dict[str, Any]:
    import peft
    import transformers

    return {
        "version": number,
        "route": route,
        "status": status,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "base": start.base_name,
        "base_path": str(start.base_path),
        "tokenizer": str(start.base_path if settings.method == "lora" else "."),
        "method": settings.method,
        "dataset_version": dataset_version,
        "seed": settings.seed,
        "config": settings.model_dump(),
        "training": {
            "steps": result.steps,
            "seconds": round(result.seconds, 2),
            "tokens": result.tokens,
            "final_loss": result.final_loss,
        },
        "metrics": {k: (r.metrics if r else None) for k, r in reports.items()},
        "warm_start_from": str(start.warm_from) if start.warm_from else None,
        "replay_rows": len(start.replay_rows),
        "augment": start.synthetic.counts(settings.augment),
        "versions": {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "peft": peft.__version__,
        },
    }


def _write_outputs(
    staging: Path,
    manifest: dict[str, Any],
    evaluation: dict[str, Any],
    assessment: Assessment,
    result: TrainResult,
    route: str,
    number: int,
) -> None:
    students.write_json(staging / "eval.json", evaluation)
    with (staging / "eval_items.jsonl").open("w") as items:
        for answer in evaluation_items(assessment):
            items.write(json.dumps(answer) + "\n")
    students.write_json(staging / "history.json", result.history)
    plot_training(result.history, staging / "training.png", f"{route} v{number}")
    plot_cascade(evaluation["cascade"], staging / "cascade.png", f"{route} v{number}")
    students.write_json(staging / "manifest.json", manifest)
