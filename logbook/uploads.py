"""Sealed segments on their way to an object store: pushed after each seal until they are there.

Sealing writes and stages a segment in the store's local mirror (`logbook.sealing`); this
module pushes the staged files, exclusively, off the logbook's thread, so a slow or absent
store never delays a write. A push that fails (the store is down, or refused) leaves the file
staged; the next seal tries it again, and a restart finds it by its mark. Nothing is lost on
the way: until its push succeeded a segment is a fsynced file on this disk, and the rows left
the hot table only after it was. A failed push is counted
(`apprentice_store_push_failures_total`) and logged once per outage, not once per tick.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from logbook.sealing import SEGMENT_DIRS, parse_part
from monitoring.metrics import Metrics
from store.store import PushReport, Store

log = logging.getLogger("apprentice.logbook")


class Uploads:
    """This logbook's staged segments and the pushes that clear them."""

    def __init__(self, store: Store, metrics: Metrics) -> None:
        self.store = store
        self.metrics = metrics
        self.pending: list[Path] = []
        self._lock = asyncio.Lock()
        self._failing = False

    def recover(self, logbook: str) -> None:
        """At open: this logbook's files still to push. A mark whose file was never linked
        (a crash between staging and the link) is dropped: its rows are still hot."""
        if not self.store.remote:
            return
        for folder in SEGMENT_DIRS.values():
            for path in self.store.staged(folder):
                part = parse_part(path)
                if part is None or part.logbook not in (None, logbook[:12]):
                    continue  # another logbook's (a shard sharing this mirror) pushes it
                if path.exists():
                    self.pending.append(path)
                else:
                    self.store.unstage(path)
        self._count()

    def add(self, paths: list[Path]) -> None:
        """Segments just sealed (and staged)."""
        if self.store.remote:
            self.pending.extend(p for p in paths if p not in self.pending)
            self._count()

    async def push(self) -> PushReport:
        """Push what is pending; never raises (what fails stays pending for the next try)."""
        async with self._lock:
            if not self.pending:
                return PushReport()
            batch = list(self.pending)
            report = await asyncio.to_thread(self.store.push_staged, batch)
            failed = {path for path, _ in report.failed}
            self.pending = [p for p in self.pending if p in failed or p not in batch]
            self._count()
            if report.failed:
                self.metrics.store_push_failures.inc(len(report.failed))
                if not self._failing:
                    path, why = report.failed[0]
                    log.error("store: %d sealed segments wait in %s to be pushed (%s: %s); "
                              "retrying at each seal", len(failed), self.store.root, path.name,
                              why)  # fmt: skip
                self._failing = True
            elif self._failing:
                log.info("store: pushes succeed again; nothing waits in %s", self.store.root)
                self._failing = False
            return report

    def _count(self) -> None:
        self.metrics.store_unpushed.set(len(self.pending))
