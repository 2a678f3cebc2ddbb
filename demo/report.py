"""The demo's closing report: a summary table and a timeline plot.

Inputs are plain data the orchestration fills from the logbook and the metrics:
`DemoSummary` (with its `Transition`s) for `summary_table`, and a list of timeline points,
dicts `{t, student_share, agreement, drift, event?}`, for `plot_timeline`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.table import Table


@dataclass(frozen=True)
class Transition:
    """One canary state change, as the controller recorded it."""

    t: float  # seconds since the demo started
    student: str  # e.g. "student:v2"
    change: str  # e.g. "shadow -> canary 10%", "rollback"
    reason: str


@dataclass
class DemoSummary:
    """What the demo's last screen reports.

    `requests` counts answered requests by served_by ("teacher", "student:<v>").
    `agreement_live` is the share of answers equal to the teacher's rule, by served_by, as the
    client saw them; `agreement_heldout` and `agreement_shadow` come from the eval reports and
    shadow pairs. `latency` is (p50, p95) seconds by served_by. Costs are USD.
    """

    requests: dict[str, int]
    agreement_live: dict[str, float] = field(default_factory=dict)
    agreement_heldout: float | None = None
    agreement_shadow: float | None = None
    latency: dict[str, tuple[float, float]] = field(default_factory=dict)
    teacher_cost_usd: float = 0.0
    cost_avoided_usd: float = 0.0
    failures: int = 0
    transitions: list[Transition] = field(default_factory=list)
    locations: dict[str, str] = field(default_factory=dict)  # "data": "/tmp/...", ...


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _ms(x: float) -> str:
    return f"{1000 * x:.0f} ms"


def summary_table(summary: DemoSummary) -> Table:
    """One table: traffic by who served it, agreement, latency, cost, transitions, paths."""
    table = Table(title="apprentice demo: summary", show_header=True, expand=False)
    table.add_column("", style="bold")
    table.add_column("value", justify="right")
    total = sum(summary.requests.values())
    for who, n in sorted(summary.requests.items()):
        row = f"{n} ({_pct(n / total if total else None)})"
        table.add_row(f"requests served by {who}", row)
    for who, share in sorted(summary.agreement_live.items()):
        table.add_row(f"live agreement with teacher, {who}", _pct(share))
    table.add_row("agreement on held-out pairs", _pct(summary.agreement_heldout))
    table.add_row("agreement on shadow pairs", _pct(summary.agreement_shadow))
    for who, (p50, p95) in sorted(summary.latency.items()):
        table.add_row(f"latency p50 / p95, {who}", f"{_ms(p50)} / {_ms(p95)}")
    table.add_row("teacher cost paid", f"${summary.teacher_cost_usd:.4f}")
    table.add_row("teacher cost avoided", f"${summary.cost_avoided_usd:.4f}")
    table.add_row("client requests failed", str(summary.failures))
    table.add_section()
    for tr in summary.transitions:
        table.add_row(f"t={tr.t:.0f}s {tr.student}", f"{tr.change}: {tr.reason}")
    if summary.locations:
        table.add_section()
    for name, where in summary.locations.items():
        table.add_row(name, where)
    return table


def _series(points: Sequence[dict[str, Any]], key: str) -> list[float]:
    # NaN, not None, where a value is missing: matplotlib leaves a gap in the line there.
    return [float("nan") if p.get(key) is None else float(p[key]) for p in points]


def plot_timeline(points: Sequence[dict[str, Any]], path: Path) -> Path:
    """Write a PNG of student share, agreement and drift over time; events as vertical lines.

    Each point: `t` (seconds), `student_share` and `agreement` (0..1), `drift` (a score;
    None where not computed yet) and optionally `event` (a short label such as "promote v1").
    """
    import matplotlib

    matplotlib.use("Agg")  # no display on a CI runner or a server
    import matplotlib.pyplot as plt

    ts = [float(p["t"]) for p in points]
    fig, ax = plt.subplots(figsize=(10, 4.5), dpi=110)
    try:
        ax.plot(ts, _series(points, "student_share"), label="served by student")
        ax.plot(ts, _series(points, "agreement"), label="agreement with teacher")
        drift = [
            (t, p["drift"]) for t, p in zip(ts, points, strict=True) if p.get("drift") is not None
        ]
        if drift:
            ax2 = ax.twinx()
            ax2.plot(*zip(*drift, strict=True), color="tab:red", ls="--", label="drift score")
            ax2.set_ylabel("drift score")
            ax2.set_ylim(bottom=0)
            ax2.legend(loc="upper right")
        for t, p in zip(ts, points, strict=True):
            if p.get("event"):
                ax.axvline(t, color="grey", lw=0.8, ls=":")
                ax.annotate(str(p["event"]), (t, 1.02), rotation=60, fontsize=7,
                            xycoords=("data", "axes fraction"))  # fmt: skip
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("seconds since start")
        ax.set_ylabel("share")
        ax.legend(loc="upper left")
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path)
    finally:
        plt.close(fig)
    return path
