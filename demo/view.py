"""What the demo shows while it runs, and the status its phases wait on.

Everything here is read from the server the way an operator would: the admin API (canary
state, students) and /metrics (sealed rows, drift scores), plus the client's own results.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from demo.plan import ROUTE
from demo.traffic import RequestResult


@dataclass
class Status:
    sealed_rows: int = 0
    students: int = 0  # registered, whatever their gate said
    usable: int = 0  # registered and not rejected by the gate
    newest: dict[str, Any] = field(default_factory=dict)  # the newest student's summary
    state: str = "idle"
    version: str | None = None
    weight: int = 0
    left_traffic: bool = False  # after the shift: rolled back or held off the traffic
    drift: float | None = None
    eval_exact_match: float | None = None
    training: bool = False  # a retrain job is running


@dataclass
class DemoView:
    console: Console
    live: bool = True
    phase: str = "start"
    shifted_at: float | None = None
    status: Status = field(default_factory=Status)
    served: Counter[str] = field(default_factory=Counter)
    window: list[RequestResult] = field(default_factory=list)
    t: float = 0.0
    _live: Live | None = None

    def __enter__(self) -> DemoView:
        if self.live:
            self._live = Live(self._table(), console=self.console, refresh_per_second=4)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(None, None, None)

    def count(self, result: RequestResult) -> None:
        if result.bad is None:
            self.served["student" if result.served_by.startswith("student") else "teacher"] += 1
            self.window.append(result)
            del self.window[:-200]

    def observe(self, canary: dict[str, Any], students: list[dict[str, Any]], metrics: str,
                t: float) -> None:  # fmt: skip
        s, self.t = self.status, t
        s.state, s.weight = canary.get("state", "idle"), int(canary.get("weight") or 0)
        s.version = canary.get("version") or canary.get("current")
        mine = [x for x in students if x.get("route") == ROUTE]
        s.students = len(mine)
        s.usable = len([x for x in mine if x.get("status") != "rejected"])
        s.newest = max(mine, key=lambda x: int(x.get("version") or 0), default={})
        ems = [x.get("exact_match") for x in students if x.get("exact_match") is not None]
        s.eval_exact_match = ems[-1] if ems else None
        s.sealed_rows = int(
            metric_value(metrics, "apprentice_rows_sealed_total", 'table="requests"')
        )
        drift = metric_value(metrics, "apprentice_drift_score", 'method="token_jsd"', None)
        s.drift = drift
        if self.shifted_at is not None and not s.left_traffic:
            for change in canary.get("history") or []:
                if change.get("to_state") in ("rolled_back", "paused") and (
                    change.get("reason") in ("drift", "agreement", "fallback_ratio")
                ):
                    s.left_traffic = True

    def point(self) -> dict[str, Any]:
        recent = self.window[-100:]
        student = [r for r in recent if r.served_by.startswith("student")]
        agreed = [r.agreed for r in recent if r.agreed is not None]
        return {
            "t": self.t,
            "student_share": len(student) / len(recent) if recent else 0.0,
            "agreement": sum(agreed) / len(agreed) if agreed else None,
            "drift": self.status.drift,
        }

    def refresh(self) -> None:
        if self._live is not None:
            self._live.update(self._table())

    def _table(self) -> Table:
        s = self.status
        table = Table(title=f"apprentice demo: {self.phase} ({self.t:.0f} s)", show_header=False)
        table.add_row("requests", ", ".join(f"{k}: {v}" for k, v in sorted(self.served.items())))
        table.add_row("sealed rows", str(s.sealed_rows))
        table.add_row("students", str(s.students))
        em = "-" if s.eval_exact_match is None else f"{s.eval_exact_match:.1%}"
        table.add_row("latest eval exact match", em)
        table.add_row("canary", f"{s.state} {s.version or ''} weight {s.weight}%")
        table.add_row("drift (token JSD)", "-" if s.drift is None else f"{s.drift:.3f}")
        return table


def metric_value(text: str, name: str, label: str, default: Any = 0.0) -> Any:
    """The sum of a metric's samples whose labels contain `label`, from /metrics text."""
    total, found = 0.0, False
    for match in re.finditer(rf"^{name}\{{([^}}]*)\}} (\S+)$", text, re.MULTILINE):
        if label in match.group(1):
            total += float(match.group(2))
            found = True
    return total if found else default
