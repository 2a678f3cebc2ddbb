"""The demo's last screen, filled from the server's own records and the client's results."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from apprentice.demo.report import DemoSummary, Transition, plot_timeline, summary_table
from apprentice.demo.traffic import TrafficStats

ROUTE = "support-triage"


def build_summary(outcome: Any) -> DemoSummary:
    """`outcome` is a run.DemoOutcome."""
    stats = TrafficStats.from_results(outcome.results)
    metrics = outcome.metrics_text
    shadow = {
        v: _sum(metrics, "apprentice_shadow_comparisons_total", f'verdict="{v}"')
        for v in ("agree", "disagree", "error")
    }
    pairs = sum(shadow.values())
    promoted = [s for s in outcome.students if s.get("status") != "rejected"]
    heldout = promoted[-1].get("exact_match") if promoted else None
    snap = (outcome.canary.get("routes") or {}).get(ROUTE, {})
    start = outcome.results[0].t if outcome.results else 0.0
    transitions = [
        Transition(
            t=max(0.0, t.get("at", 0.0) - _wall_start(outcome)),
            student=str(t.get("version") or "-"),
            change=f"{t['from_state']} -> {t['to_state']} ({t.get('weight', 0)}%)",
            reason=f"{t.get('reason')}: {t.get('detail', '')}"[:90],
        )
        for t in snap.get("history") or []
    ]
    del start
    return DemoSummary(
        requests=stats.counts(),
        agreement_live=stats.agreement(),
        agreement_heldout=heldout,
        agreement_shadow=shadow["agree"] / pairs if pairs else None,
        latency=stats.latency(),
        teacher_cost_usd=_sum(metrics, "apprentice_teacher_cost_usd_total", ROUTE),
        cost_avoided_usd=_sum(metrics, "apprentice_teacher_cost_avoided_usd_total", ROUTE),
        failures=len(stats.failures),
        transitions=transitions,
        locations={
            "data": str(outcome.data_dir),
            "students": str(outcome.data_dir / "students" / ROUTE),
            "segments": str(outcome.data_dir / "segments"),
            "server log": str(outcome.data_dir / "serve.log"),
            "plot": str(outcome.data_dir / "demo-timeline.png"),
        },
    )


def render(outcome: Any, console: Any) -> DemoSummary:
    summary = build_summary(outcome)
    console.print(summary_table(summary))
    if outcome.timeline:
        plot_timeline(outcome.timeline, outcome.data_dir / "demo-timeline.png")
    return summary


def _wall_start(outcome: Any) -> float:
    history = ((outcome.canary.get("routes") or {}).get(ROUTE) or {}).get("history") or []
    return (
        float(outcome.started_wall)
        if hasattr(outcome, "started_wall")
        else (float(history[0]["at"]) if history else 0.0)
    )


def _sum(text: str, name: str, label: str) -> float:
    total = 0.0
    for match in re.finditer(rf"^{name}\{{([^}}]*)\}} (\S+)$", text, re.MULTILINE):
        if label in match.group(1):
            total += float(match.group(2))
    return total


def timeline_png(data_dir: Path) -> Path:
    return data_dir / "demo-timeline.png"


def save_records(outcome: Any, summary: DemoSummary) -> None:
    """What the demo saw, beside its data: the last /metrics scrape, the timeline, a summary."""
    data_dir: Path = outcome.data_dir
    (data_dir / "metrics-final.prom").write_text(outcome.metrics_text)
    (data_dir / "demo-timeline.json").write_text(json.dumps(outcome.timeline))
    record = {
        "ok": outcome.ok,
        "failed_phase": outcome.failed_phase,
        "phases": outcome.phases,
        "requests": summary.requests,
        "failures": summary.failures,
        "failure_examples": TrafficStats.from_results(outcome.results).failures[:10],
        "agreement_live": summary.agreement_live,
        "agreement_shadow": summary.agreement_shadow,
        "agreement_heldout": summary.agreement_heldout,
        "teacher_cost_usd": summary.teacher_cost_usd,
        "cost_avoided_usd": summary.cost_avoided_usd,
        "shifted_at": outcome.shifted_at,
        "started_wall": outcome.started_wall,
    }
    (data_dir / "demo-summary.json").write_text(json.dumps(record, indent=2, default=str))
