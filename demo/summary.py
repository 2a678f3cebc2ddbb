"""The demo's last screen, filled from the server's own records and the client's results."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console

from demo.plan import ROUTE
from demo.report import DemoSummary, Transition, plot_timeline, summary_table
from demo.run import DemoOutcome
from demo.traffic import TrafficStats
from demo.view import metric_value


def build_summary(outcome: DemoOutcome) -> DemoSummary:
    """The summary of a finished run."""
    stats = TrafficStats.from_results(outcome.results)
    metrics = outcome.metrics_text
    shadow = {
        v: metric_value(metrics, "apprentice_shadow_comparisons_total", f'verdict="{v}"')
        for v in ("agree", "disagree", "error")
    }
    pairs = sum(shadow.values())
    promoted = [s for s in outcome.students if s.get("status") != "rejected"]
    heldout = promoted[-1].get("exact_match") if promoted else None
    snap = (outcome.canary.get("routes") or {}).get(ROUTE, {})
    transitions = [
        Transition(
            t=max(0.0, t.get("at", 0.0) - outcome.started_wall),
            student=str(t.get("version") or "-"),
            change=f"{t['from_state']} -> {t['to_state']} ({t.get('weight', 0)}%)",
            reason=f"{t.get('reason')}: {t.get('detail', '')}"[:90],
        )
        for t in snap.get("history") or []
    ]
    return DemoSummary(
        requests=stats.counts(),
        agreement_live=stats.agreement(),
        agreement_heldout=heldout,
        agreement_shadow=shadow["agree"] / pairs if pairs else None,
        latency=stats.latency(),
        teacher_cost_usd=metric_value(metrics, "apprentice_teacher_cost_usd_total", ROUTE),
        cost_avoided_usd=metric_value(metrics, "apprentice_teacher_cost_avoided_usd_total", ROUTE),
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


def render(outcome: DemoOutcome, console: Console) -> DemoSummary:
    summary = build_summary(outcome)
    console.print(summary_table(summary))
    if outcome.timeline:
        plot_timeline(outcome.timeline, outcome.data_dir / "demo-timeline.png")
    return summary


def save_records(outcome: DemoOutcome, summary: DemoSummary) -> None:
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
