"""What a run shows a person: the training plot and the metrics table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

ROWS = [
    ("exact_match", "exact match", "{:.3f}"),
    ("token_f1", "token F1", "{:.3f}"),
    ("json_valid", "JSON valid", "{:.3f}"),
    ("tool_call_match", "tool-call match", "{:.3f}"),
    ("length_ratio", "length ratio", "{:.2f}"),
    ("latency_p50_ms", "latency p50 ms", "{:.1f}"),
    ("latency_p95_ms", "latency p95 ms", "{:.1f}"),
]


def plot_training(history: list[dict[str, float]], path: Path, title: str) -> None:
    """training.png: train and eval loss (left axis) and eval exact match (right) per step."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers; must precede pyplot
    import matplotlib.pyplot as plt

    def series(key: str) -> tuple[list[float], list[float]]:
        points = [(h["step"], h[key]) for h in history if key in h]
        return [p[0] for p in points], [p[1] for p in points]

    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(*series("train_loss"), label="train loss", color="tab:blue", linewidth=1)
    ax.plot(*series("eval_loss"), "o-", label="eval loss", color="tab:orange")
    ax.set_xlabel("step")
    ax.set_ylabel("loss per answer token")
    ax.set_yscale("log")
    right = ax.twinx()
    right.plot(*series("eval_exact_match"), "s-", label="eval exact match", color="tab:green")
    right.set_ylim(0, 1.02)
    right.set_ylabel("exact match")
    handles = ax.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
    ax.legend(handles=handles, loc="center right")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def metrics_table(columns: dict[str, dict[str, Any] | None]) -> str:
    """A plain-text table: one row per metric, one column per model (student, base, ...)."""
    names = [name for name, m in columns.items() if m is not None]
    lines = ["metric".ljust(18) + "".join(n.rjust(12) for n in names)]
    for key, label, fmt in ROWS:
        cells = []
        for name in names:
            value = (columns[name] or {}).get(key)
            cells.append(("-" if value is None else fmt.format(value)).rjust(12))
        lines.append(label.ljust(18) + "".join(cells))
    return "\n".join(lines)


def plot_cascade(cascade: dict[str, Any], path: Path, title: str) -> None:
    """cascade.png: agreement among served answers against coverage, one line per confidence
    signal, with the target and the chosen rule marked (eval.json's `cascade`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for name, points in sorted((cascade.get("curves") or {}).items()):
        if points:
            ax.plot([p[0] for p in points], [p[1] for p in points], label=name, linewidth=1.2)
    target = cascade.get("target_agreement")
    if target is not None:
        ax.axhline(target, color="grey", linestyle="--", linewidth=1, label=f"target {target}")
    chosen = cascade.get("in_sample") or {}
    if chosen.get("agreement") is not None:
        ax.plot(chosen["coverage"], chosen["agreement"], "k*", markersize=12,
                label=f"rule: {cascade.get('signal')}")  # fmt: skip
    if cascade.get("coverage") is not None and cascade.get("agreement") is not None:
        ax.plot(cascade["coverage"], cascade["agreement"], "ro", label="cross-validated")
    ax.set_xlabel("coverage (share of answers the student serves)")
    ax.set_ylabel("agreement among served answers")
    ax.set_xlim(0, 1.02)
    ax.set_ylim(max(0.0, min(0.5, (target or 1) - 0.3)), 1.01)
    ax.legend(loc="lower left", fontsize=8)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run_summary(
    route: str, number: int, status: str, reasons: list[str], manifest: dict[str, Any]
) -> str:
    """What a retrain run prints: the verdict, the metrics of each model and slice, the
    cascade's rule and prediction."""
    head = f"student {route} v{number}: {status}"
    if reasons:
        head += " (" + "; ".join(reasons) + ")"
    slices = {f"{k}": v for k, v in manifest["slices"].items() if v.get("n")}
    lines = [head, metrics_table(manifest["metrics"]), metrics_table(slices)]
    note = manifest["slices"].get("novel", {}).get("note")
    if note:
        lines.append(f"novel slice: {note}")
    c = manifest["cascade"]
    if c.get("threshold") is None:
        lines.append(f"cascade: no threshold reaches agreement {c['target_agreement']}; the "
                     "student serves nothing until it is better")  # fmt: skip
    elif c.get("coverage") is not None:
        agreement = "-" if c["agreement"] is None else f"{c['agreement']:.3f}"
        lines.append(
            f"cascade: serve when {c['signal']} >= {c['threshold']:.4f}; cross-validated "
            f"coverage {c['coverage']:.3f}, agreement {agreement} (target "
            f"{c['target_agreement']})"
        )
    return "\n".join(lines)
