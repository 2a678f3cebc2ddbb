"""What a curation run did: per-stage counts, the result object, and its two renderings.

Every stage returns a `StageReport` next to its rows: rows in, rows out, and a count per reason
for each row it removed (or, for stages that change rows without removing them, per change in
`changed`). `CurationResult` gathers them for the CLI, the scheduler and the admin API;
`render_report` draws it as rich tables and `result_to_json` as plain JSON.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text


@dataclass
class StageReport:
    name: str
    rows_in: int
    rows_out: int
    dropped: dict[str, int] = field(default_factory=dict)
    changed: dict[str, int] = field(default_factory=dict)  # rows kept but altered, per kind

    @classmethod
    def of(
        cls, name: str, rows_in: int, rows_out: int, dropped: Counter[str], changed: Counter[str]
    ) -> StageReport:
        return cls(
            name, rows_in, rows_out, dict(sorted(dropped.items())), dict(sorted(changed.items()))
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "rows_in": self.rows_in,
            "rows_out": self.rows_out,
            "dropped": self.dropped,
            "changed": self.changed,
        }


@dataclass
class ClusterRow:
    """One prompt cluster of the balance stage, before and after capping."""

    id: str
    task: str | None
    size_before: int
    size_after: int
    weight: float  # oversampling factor applied to its rows (1.0: none)
    example: str  # the start of its centre prompt (already scrubbed)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "task": self.task,
            "size_before": self.size_before,
            "size_after": self.size_after,
            "weight": self.weight,
            "example": self.example,
        }


@dataclass
class CurationResult:
    """The outcome of `run_curation`.

    status: ``written`` (a new version exists), ``up_to_date`` (no new rows or settings since
    the last version; nothing written) or ``empty`` (no row survived the stages; nothing
    written, the stage table says why).
    """

    route: str
    status: Literal["written", "up_to_date", "empty"]
    message: str
    version: int | None = None
    path: Path | None = None
    stages: list[StageReport] = field(default_factory=list)
    clusters: list[ClusterRow] = field(default_factory=list)
    counts: dict[str, int] = field(
        default_factory=dict
    )  # train, eval, eval_in_distribution, eval_novel
    skipped: list[dict[str, str]] = field(default_factory=list)  # unreadable rows: id, reason
    skipped_segments: list[dict[str, str]] = field(default_factory=list)  # files left out
    seconds: float = 0.0
    manifest: dict[str, Any] | None = None
    novel_note: str | None = None  # why eval has no novel slice, when it has none

    @property
    def written(self) -> bool:
        return self.status == "written"


def result_to_json(result: CurationResult) -> dict[str, Any]:
    """The JSON form of a result (`apprentice curate --json`, `POST /admin/jobs/curate`)."""
    return {
        "route": result.route,
        "status": result.status,
        "message": result.message,
        "version": result.version,
        "path": str(result.path) if result.path else None,
        "counts": result.counts,
        "stages": [s.to_json() for s in result.stages],
        "clusters": [c.to_json() for c in result.clusters],
        "skipped": result.skipped,
        "novel_note": result.novel_note,
        "skipped_segments": result.skipped_segments,
        "seconds": round(result.seconds, 3),
    }


def render_report(result: CurationResult) -> RenderableType:
    """A human-readable report: headline, one row per stage with drop reasons, cluster table."""
    style = "bold green" if result.written else "bold yellow"
    parts: list[RenderableType] = [Text(result.message, style=style)]
    if result.stages:
        parts.append(_stage_table(result.stages))
    if result.clusters:
        parts.append(_cluster_table(result.clusters))
    if result.novel_note:
        parts.append(Text(f"Novel slice: {result.novel_note}.", style="yellow"))
    if result.skipped:
        shown = ", ".join(f"{s['request_id']} ({s['reason']})" for s in result.skipped[:10])
        more = f" and {len(result.skipped) - 10} more" if len(result.skipped) > 10 else ""
        parts.append(Text(f"Skipped unreadable rows: {shown}{more}", style="yellow"))
    return Group(*parts)


def _stage_table(stages: list[StageReport]) -> Table:
    table = Table(title="Curation stages", title_justify="left")
    table.add_column("stage")
    table.add_column("in", justify="right")
    table.add_column("out", justify="right")
    table.add_column("removed", justify="right")
    table.add_column("why")
    for stage in stages:
        why = ", ".join(f"{k}: {v}" for k, v in stage.dropped.items())
        if stage.changed:
            changed = ", ".join(f"{k}: {v}" for k, v in stage.changed.items())
            why = f"{why}; changed {changed}" if why else f"changed {changed}"
        removed = stage.rows_in - stage.rows_out
        table.add_row(stage.name, str(stage.rows_in), str(stage.rows_out), str(removed), why)
    return table


def _cluster_table(clusters: list[ClusterRow], limit: int = 20) -> Table:
    table = Table(title="Prompt clusters (balance)", title_justify="left")
    for name, justify in (("cluster", "left"), ("before", "right"), ("after", "right")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    table.add_column("weight", justify="right")
    table.add_column("example")
    for row in clusters[:limit]:
        table.add_row(
            row.id, str(row.size_before), str(row.size_after), f"{row.weight:g}", row.example[:60]
        )
    if len(clusters) > limit:
        table.add_row(f"... {len(clusters) - limit} more", "", "", "", "")
    return table
