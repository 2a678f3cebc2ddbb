"""Incremental curation: what earlier runs already read, so a run reads only new segments.

After each run the plan saves, per route, its watermark (the segment files it read) with the
work table of every pair that survived the row-local stages (`curation.rows`: a few columns
per pair, never the pair) and those stages' reports. That store of older rows is the
reservoir the next run starts from: it streams only the segments past the watermark through
the row-local stages, appends them, and runs dedupe, balance, the novel slice and the split
over the reservoir and the new rows together.

The result equals a full run's because a row's row-local outcome depends only on the row and
on what `Watermark.context` digests: the settings and filters, each task's newest partition,
the feedback files, and the verdict per (prompt, answer) pair. When any of those changed, a
segment read before is gone (compaction renamed it), or a request id of a new segment was
sealed before (a replayed journal), the reservoir does not hold and the run reads everything.

Saving order: the work table and the watermark go to a temporary folder, renamed over the
old one last; a crash leaves the old state or the new, and a stale state only costs a full run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from curation.parts import link_parts
from curation.report import StageReport
from curation.rows import RowContext

STATE_FORMAT = 2  # 2: the reservoir is the work table's part files (`curation.parts`)
log = logging.getLogger("apprentice.curation")


@dataclass(frozen=True)
class Watermark:
    segments: list[str]  # request segment files read, by name relative to the store root
    context: str  # digest of what every row's row-local outcome depends on, besides the row
    next_pos: int  # the next work-table row number
    stages: list[dict[str, Any]]  # the row-local stages' summed reports
    skipped: list[dict[str, str]]
    skipped_total: int

    partitions: list[list[str | None]]  # [task, teacher, prompt fingerprint] of each task

    @staticmethod
    def digest(ctx: RowContext, scope_key: str, feedback: list[str]) -> str:
        verdicts = sorted(
            (k, v.score, v.correction, str(v.created_at)) for k, v in ctx.by_pair.items()
        )
        settings = ctx.settings.model_dump(mode="json")
        blob = json.dumps(
            [STATE_FORMAT, scope_key, settings, feedback, verdicts], sort_keys=True, default=str
        )
        return hashlib.blake2b(blob.encode(), digest_size=16).hexdigest()

    @staticmethod
    def listed(ctx: RowContext) -> list[list[str | None]]:
        return sorted(([k, *v] for k, v in ctx.partitions.items()), key=str)

    def holds(self, context: str, segments: list[str], ctx: RowContext) -> bool:
        """Whether the reservoir's rows would come out of the row-local stages unchanged: a
        task first seen in new rows changes nothing old, a task's new partition does."""
        if self.context != context or not set(self.segments) <= set(segments):
            return False
        now = ctx.partitions
        return all(now.get(task) == (teacher, fp) for task, teacher, fp in self.partitions)


def load(state_dir: Path) -> Watermark | None:
    """The saved watermark, or None (none yet, or unreadable: a full run rebuilds it)."""
    try:
        data = json.loads((state_dir / "watermark.json").read_text())
        if data.pop("format") != STATE_FORMAT or not (state_dir / "parts").is_dir():
            return None
        return Watermark(**data)
    except (OSError, ValueError, TypeError, KeyError):
        return None


def restore(state_dir: Path, mark: Watermark, ctx: RowContext, parts: Path) -> None:
    """The reservoir's parts into the run's `parts` folder, and its reports into the tally."""
    link_parts(state_dir / "parts", parts)
    for stage in mark.stages:
        ctx.tally.add(StageReport(**stage))
    ctx.skipped.extend(mark.skipped)
    ctx.skipped_total = mark.skipped_total


def save(state_dir: Path, mark: Watermark, parts: Path) -> None:
    """Write the reservoir and the watermark, replacing the old state whole. The state is a
    cache: when it cannot be written (a full disk, another run replacing it at the same
    moment) the run goes on and the next one reads everything."""
    try:
        _save(state_dir, mark, parts)
    except OSError as exc:
        log.warning(
            "curation state for %s not saved (%s); the next run reads everything",
            state_dir.name,
            exc,
        )


def _save(state_dir: Path, mark: Watermark, parts: Path) -> None:
    state_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = state_dir.with_name(f".{state_dir.name}-{uuid.uuid4().hex}")
    tmp.mkdir()
    try:
        link_parts(parts, tmp / "parts")
        (tmp / "watermark.json").write_text(json.dumps({"format": STATE_FORMAT, **asdict(mark)}))
        old = state_dir.with_name(f".{state_dir.name}-old-{uuid.uuid4().hex}")
        if state_dir.exists():
            os.rename(state_dir, old)
        os.rename(tmp, state_dir)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
