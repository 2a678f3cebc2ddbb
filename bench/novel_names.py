"""Students and unseen names: does eval predict live quality, and does augmentation help?

The tests' triage task (tests/retrain/triage_task.py) is logged through the real proxy (fake
rule-based teacher, official openai client), sealed, curated and retrained on the tiny base,
for several span detectors and with augmentation off and on. Each student is then asked, with
the same greedy decoding, the requests of `novel_rows`: texts naming items and people no
training row names. Per variant:

- eval: exact match on the in_distribution and novel slices, and the cascade's predicted
  (cross-validated) coverage and agreement on the novel slice;
- live (offline): exact match on the unseen-name requests, and the coverage and agreement of
  the student's own cascade rule on them.

Then the default variant's student is promoted to 100% in a running proxy and the unseen-name
requests go through it: served share, agreement of served answers with the teacher, fallbacks
and client errors, beside the live gauges the proxy exports.

    .venv/bin/python bench/novel_names.py [--variants default,...] [--no-proxy]

Targets (one CPU thread): served agreement >= 97% at coverage >= 80% on unseen names,
predicted within 5 points of live, training under 5 CPU-minutes.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the task generator and the fakes live with the tests

import httpx  # noqa: E402
import openai  # noqa: E402
import torch  # noqa: E402

from curation.job import run_curation  # noqa: E402
from curation.settings import CurationSettings  # noqa: E402
from retrain.evaluation import evaluate  # noqa: E402
from retrain.job import run_retrain  # noqa: E402
from retrain.settings import AugmentSettings, RetrainSettings  # noqa: E402
from retrain.slots import read_slots  # noqa: E402
from retrain.students import load_student, read_cascade  # noqa: E402
from tests.conftest import ADMIN_TOKEN, CLIENT_KEY, RunningProxy, proxy_config  # noqa: E402
from tests.fakes.teacher import FakeTeacher  # noqa: E402
from tests.retrain import copy_tasks  # noqa: E402
from tests.retrain.triage_task import make_rows, novel_rows  # noqa: E402

ROUTE = "triage"
# name -> span detectors of curation, and augmentation of retrain
CAPS, SLOTS, RARE = ["capitalised", "numbers"], ["capitalised", "numbers", "slot_words"], [
    "capitalised", "numbers", "rare_words"]  # fmt: skip
VARIANTS: dict[str, dict[str, Any]] = {
    "names": {"detectors": CAPS, "augment": False},
    "names+aug": {"detectors": CAPS, "augment": True},
    "slots": {"detectors": SLOTS, "augment": False},
    "slots+aug": {"detectors": SLOTS, "augment": True},
    "rare": {"detectors": RARE, "augment": False},
    "rare+aug": {"detectors": RARE, "augment": True},
    "slots+aug:route": {"detectors": SLOTS, "augment": True, "vocabulary": "route"},
    "slots+aug:made-up": {"detectors": SLOTS, "augment": True, "vocabulary": "generated"},
    "default": {},  # CurationSettings() and RetrainSettings() as they are
}
# --task: the traffic and the unseen-name requests (issue 17 adds the two that copy)
TASKS = {
    "triage": (make_rows, novel_rows),
    "extraction": (copy_tasks.extraction_rows, copy_tasks.novel_extraction_rows),
    "tickets": (copy_tasks.ticket_rows, copy_tasks.novel_ticket_rows),
}
DEFAULT = "slots+aug"  # the defaults of CurationSettings and AugmentSettings


def user_text(row: dict[str, Any]) -> str:
    return str(json.loads(row["messages"])[-1]["content"])


def answers_of(rows: list[dict[str, Any]]) -> dict[str, str]:
    return {user_text(r): r["answer_text"] for r in rows}


def log_traffic(data_dir: Path, rows: list[dict[str, Any]], teacher: FakeTeacher) -> None:
    """Send every row through the real proxy (sessions of four rows), then seal."""
    config = proxy_config(data_dir, teacher)
    with RunningProxy(config) as proxy:
        chat = openai.OpenAI(base_url=proxy.base_url, api_key=CLIENT_KEY, max_retries=0)
        for i, row in enumerate(rows):
            chat.chat.completions.create(
                model=ROUTE,
                messages=json.loads(row["messages"]),
                extra_headers={"x-apprentice-session": f"s{i // 4}"},
            )
        headers = {"authorization": f"Bearer {ADMIN_TOKEN}"}
        seal = httpx.post(f"{proxy.url}/admin/seal", headers=headers, timeout=60)
        assert seal.status_code == 200, seal.text


def offline_live(path: Path, live: list[dict[str, Any]]) -> dict[str, Any]:
    """The student on unseen-name requests: exact match, and its own cascade rule's coverage
    and agreement on them."""
    model, tokenizer = load_student(path)
    report = evaluate(model, tokenizer, live, 64, 0, read_slots(path))
    rule = read_cascade(path)
    served = [s for s in report.items if rule is not None and rule.serves(s.signals)]
    return {
        "exact_match": report.metrics["exact_match"],
        "coverage": len(served) / len(report.items),
        "agreement": sum(s.exact for s in served) / len(served) if served else None,
    }


def run_variant(
    name: str, segments: Path, live: list[dict[str, Any]], workdir: Path, max_steps: int = 900
) -> dict[str, Any]:
    """One variant, `name` or `name@seed` (the training seed; the traffic is the same)."""
    base, _, seed = name.partition("@")
    spec = VARIANTS[base]
    data_dir = workdir / name.replace("+", "_").replace(":", "_").replace("@", "_seed")
    shutil.copytree(segments, data_dir)
    curation = CurationSettings(**({"span_detectors": spec["detectors"]} if spec else {}))
    curated = run_curation(data_dir, ROUTE, curation)
    assert curated.written, curated.message
    if spec:
        augment = AugmentSettings(enabled=spec["augment"],
                                  vocabulary=spec.get("vocabulary", "both"))  # fmt: skip
        settings = RetrainSettings(
            gate={"exact_match": 0.0}, augment=augment, max_steps=max_steps, seed=int(seed or 0)
        )
    else:  # the defaults, gate included: does a user's route get a student?
        settings = RetrainSettings(max_steps=max_steps, seed=int(seed or 0))
    started, cpu = time.perf_counter(), time.process_time()
    result = run_retrain(data_dir, ROUTE, settings, progress=False)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    slices, cascade = result.slices, result.cascade
    novel = slices.get("novel", {})
    predicted = (cascade.get("slices") or {}).get("novel") or {}
    return {
        "variant": name,
        "data_dir": str(data_dir),
        "student": str(result.path),
        "eval_in": slices.get("in_distribution", {}).get("n"),
        "eval_novel": novel.get("n", 0),
        "held_out": [h["text"] for h in novel.get("held_out", [])],
        "synthetic": result.augment.get("synthetic_rows", 0),
        "in_em": slices.get("in_distribution", {}).get("exact_match"),
        "novel_em": novel.get("exact_match"),
        "signal": cascade.get("signal"),
        "pred_coverage": predicted.get("coverage"),
        "pred_agreement": predicted.get("agreement"),
        "live": offline_live(result.path, live),
        "train_s": result.train_seconds,
        "wall_s": wall,
        "cpu_s": cpu,
        "gate": "passed" if result.passed else "refused: " + "; ".join(result.reasons),
    }


def _f(value: Any, fmt: str = "{:.3f}") -> str:
    return "-" if value is None else fmt.format(value)


def variants_table(results: list[dict[str, Any]]) -> str:
    head = (
        "| variant | eval in / novel | synthetic | in-dist EM | novel-slice EM | live EM | "
        "signal | predicted coverage / agreement | live coverage / agreement | train s | "
        "retrain CPU s | gate |"
    )
    lines = [head, "|" + "---|" * 12]
    for r in results:
        live = r["live"]
        lines.append(
            f"| {r['variant']} | {r['eval_in']} / {r['eval_novel']} | {r['synthetic']} | "
            f"{_f(r['in_em'])} | {_f(r['novel_em'])} | {_f(live['exact_match'])} | "
            f"{r['signal']} | {_f(r['pred_coverage'])} / {_f(r['pred_agreement'])} | "
            f"{_f(live['coverage'])} / {_f(live['agreement'])} | {r['train_s']:.0f} | "
            f"{r.get('cpu_s', 0):.0f} | {r.get('gate', '-')} |"
        )
    return "\n".join(lines)


def summary_table(results: list[dict[str, Any]]) -> str:
    """Means over the seeds each variant ran with."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        groups.setdefault(r["variant"].partition("@")[0], []).append(r)

    def mean(rs: list[dict[str, Any]], get: Any) -> float | None:
        values = [v for v in map(get, rs) if v is not None]
        return sum(values) / len(values) if values else None

    lines = [
        "| variant | seeds | novel-slice EM | live EM | predicted coverage / agreement | "
        "live coverage / agreement | train s |",
        "|" + "---|" * 7,
    ]
    for name, rs in groups.items():
        lines.append(
            f"| {name} | {len(rs)} | {_f(mean(rs, lambda r: r['novel_em']))} | "
            f"{_f(mean(rs, lambda r: r['live']['exact_match']))} | "
            f"{_f(mean(rs, lambda r: r['pred_coverage']))} / "
            f"{_f(mean(rs, lambda r: r['pred_agreement']))} | "
            f"{_f(mean(rs, lambda r: r['live']['coverage']))} / "
            f"{_f(mean(rs, lambda r: r['live']['agreement']))} | "
            f"{mean(rs, lambda r: r['train_s']):.0f} |"
        )
    return "\n".join(lines)


def through_proxy(
    result: dict[str, Any], live: list[dict[str, Any]], teacher: FakeTeacher
) -> dict[str, Any]:
    """Promote the variant's student to 100% in a running proxy and send the live requests."""
    data_dir = Path(result["data_dir"])
    version = Path(result["student"]).name
    config = proxy_config(data_dir, teacher, canary={"holdout_share": 0.05})
    expected = answers_of(live)
    served = agree = errors = 0
    with RunningProxy(config) as proxy:
        headers = {"authorization": f"Bearer {ADMIN_TOKEN}"}
        body = {"version": version, "weight": 100}
        r = httpx.post(f"{proxy.url}/admin/canary/{ROUTE}/set-weight", json=body,
                       headers=headers, timeout=60)  # fmt: skip
        assert r.status_code == 200, r.text
        chat = openai.OpenAI(base_url=proxy.base_url, api_key=CLIENT_KEY, max_retries=0)
        for i, row in enumerate(live):
            text = user_text(row)
            try:
                raw = chat.chat.completions.with_raw_response.create(
                    model=ROUTE,
                    messages=json.loads(row["messages"]),
                    extra_headers={"x-apprentice-session": f"live{i}"},
                )
            except openai.APIError:
                errors += 1
                continue
            if raw.headers["x-apprentice-served-by"].startswith("student"):
                served += 1
                content = raw.parse().choices[0].message.content or ""
                agree += _same(content, expected[text])
        metrics = httpx.get(f"{proxy.url}/metrics", timeout=30).text
    fallbacks = _sample_sum(metrics, "apprentice_fallbacks_total", 'reason="low_confidence"')
    reasons = {r: _sample_sum(metrics, "apprentice_fallbacks_total", f'reason="{r}"')
               for r in ("error", "timeout", "invalid_json", "invalid_tool_call")}  # fmt: skip
    bypassed = _sample_sum(metrics, "apprentice_student_bypassed_total")
    holdout = len(live) - errors - served - fallbacks - sum(reasons.values()) - bypassed
    return {
        "requests": len(live),
        "served": served,
        "fallbacks": fallbacks,
        "holdout": holdout,
        "other_fallbacks": reasons,
        "bypassed": bypassed,
        "coverage": served / max(1, served + fallbacks),
        "agreement": agree / served if served else None,
        "client_errors": errors,
        "gauges": _gauges(metrics),
    }


def _same(a: str, b: str) -> bool:
    from retrain.students import exact_match

    return exact_match(a, b)


def _sample_sum(text: str, name: str, *needles: str) -> int:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(n in line for n in needles):
            total += float(line.rsplit(" ", 1)[1])
    return int(total)


def _gauges(text: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if line.startswith(("apprentice_cascade_coverage_ratio", "apprentice_cascade_agreement")):
            key, value = line.rsplit(" ", 1)
            out[key] = float(value)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=sorted(TASKS), default="triage")
    parser.add_argument(
        "--variants", default=None, help=f"of {list(VARIANTS)}, each [@seed] (default: all "
        "for triage, `default` for the others)",
    )  # fmt: skip
    parser.add_argument("--pairs", type=int, default=2000)
    parser.add_argument("--live", type=int, default=300)
    parser.add_argument("--no-proxy", action="store_true", help="skip the live proxy run")
    parser.add_argument("--max-steps", type=int, default=900, help="training steps (smoke: 50)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--keep", type=Path, default=None, help="keep data dirs here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    known, unseen = TASKS[args.task]
    rows = known(args.pairs, seed=0)
    live = unseen(args.live, seed=7)
    variants = args.variants or (",".join(VARIANTS) if args.task == "triage" else "default")
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="novel-names-"))
    workdir.mkdir(parents=True, exist_ok=True)
    segments = workdir / "logged"
    with FakeTeacher(answer=lambda body: answers_of(rows + live)[
            body["messages"][-1]["content"]]) as teacher:  # fmt: skip
        started = time.perf_counter()
        log_traffic(segments, rows, teacher)
        print(f"logged {len(rows)} requests through the proxy in "
              f"{time.perf_counter() - started:.1f} s", flush=True)  # fmt: skip
        results = []
        for name in variants.split(","):
            results.append(run_variant(name, segments, live, workdir, args.max_steps))
            print(variants_table(results[-1:]).splitlines()[-1], flush=True)
        print(variants_table(results))
        print(summary_table(results))
        proxied = None
        want = DEFAULT if args.task == "triage" else "default"
        chosen = next((r for r in results if r["variant"] == want), results[-1])
        if not args.no_proxy:
            proxied = through_proxy(chosen, live, teacher)
            print(proxy_table(chosen, proxied))
    if args.json:
        args.json.write_text(json.dumps({"variants": results, "proxy": proxied}, indent=2))
    if args.keep is None:
        shutil.rmtree(workdir, ignore_errors=True)


def proxy_table(chosen: dict[str, Any], p: dict[str, Any]) -> str:
    lines = [
        "| student | unseen-name requests | served by student | coverage | agreement (served) "
        "| predicted coverage / agreement | fallbacks (low_confidence) | other fallbacks, bypassed "
        "| holdout | client errors |",
        "|" + "---|" * 10,
        f"| {chosen['variant']} | {p['requests']} | {p['served']} | {_f(p['coverage'])} | "
        f"{_f(p['agreement'])} | {_f(chosen['pred_coverage'])} / "
        f"{_f(chosen['pred_agreement'])} | {p['fallbacks']} | "
        f"{sum(p['other_fallbacks'].values())}, {p['bypassed']} | {p['holdout']} | "
        f"{p['client_errors']} |",
    ]
    gauges = "; ".join(f"{k} = {v:.3f}" for k, v in sorted(p["gauges"].items())
                       if not math.isnan(v))  # fmt: skip
    return "\n".join(lines) + (f"\ngauges: {gauges}" if gauges else "")


if __name__ == "__main__":
    main()
