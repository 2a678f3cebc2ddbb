"""The curation job: a route's sealed log in, one new dataset version out.

`run_curation` is the one entry point; the CLI (`apprentice curate`), the retrain scheduler and
`POST /admin/jobs/curate` call it. It reads only sealed Parquet segments, so it runs beside a
live server. Stages run in order (select, quality, feedback, scrub, dedupe, balance, split,
reference); each reports rows in and out with a count per reason.

The version is written into a hidden temporary folder and renamed into place, manifest last
inside it: a reader sees a whole version or none, and `dataset_versions` only lists folders
with a manifest. Two jobs racing for the same number: the loser takes the next one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq
from rich.console import Console
from rich.progress import Progress

from curation.dataset import dataset_root, dataset_versions, read_manifest
from curation.output import dataset_table, read_prior_eval
from curation.pipeline import StageOutput
from curation.plan import run_plan
from curation.report import CurationResult
from curation.scan import DEFAULT_RESOURCES, Resources, Scope
from curation.settings import CurationSettings
from logbook.segments import Skipped, segment_files

MANIFEST_FORMAT = 1
STATE_DIR = ".curation-state"  # per route: the watermark and reservoir (curation.watermark)
SKIPPED_LISTED = 1000  # unreadable row ids listed in the manifest; the total is always kept


class NoRowsError(Exception):
    """The route has no logged rows to curate (CLI: print the message, exit code 1)."""


def run_curation(
    data_dir: Path,
    route: str,
    settings: CurationSettings,
    *,
    task: str | None = None,
    since: datetime | None = None,
    progress: bool = False,
    resources: Resources = DEFAULT_RESOURCES,
) -> CurationResult:
    """Curate `route`'s sealed log into the next dataset version under `data_dir/datasets`.

    task: only rows of this x-apprentice-task. since: only rows started at or after this time
    (naive times are UTC). progress: show a rich progress bar on stderr.

    Returns a `CurationResult` whose status is ``written``, ``up_to_date`` (no new segment,
    feedback or setting since the last version: nothing written) or ``empty`` (no row survived
    curation: nothing written). Raises `NoRowsError` when the route has no logged rows at all
    (or none match task/since). Unreadable rows are skipped and listed, never fatal.
    resources: memory limit, spill folder and batch sizes (`curation.scan.Resources`); the
    job runs out of core (`curation.plan`), so memory does not grow with the log.
    """
    started = time.monotonic()
    skipped: list[Skipped] = []
    sources = _sources(data_dir, route, skipped)
    if not sources["segments"]:
        raise NoRowsError(
            f"Route {route!r} has no sealed traffic under {data_dir}; send requests "
            "through the proxy and let them seal (or check --route and the data dir)."
        )
    fingerprint = _fingerprint(sources, settings, task, since)
    latest = _latest_with(data_dir, route, fingerprint)
    if latest is not None:
        return CurationResult(
            route,
            "up_to_date",
            f"No new rows for route {route!r} since dataset v{latest}; nothing written.",
            version=latest,
            seconds=time.monotonic() - started,
            skipped_segments=[s.as_dict() for s in skipped],
        )
    out = _run(data_dir, route, settings, task, since, progress, resources)
    if out.rows_read == 0:
        raise NoRowsError(
            f"Route {route!r} has no logged rows matching {_filter_text(task, since)}."
        )
    if out.train or out.evaluation:
        manifest = _manifest(route, settings, task, since, sources, fingerprint, out)
        manifest["skipped_segments"] = [s.as_dict() for s in skipped]
        version, path = _write_version(data_dir, route, out, manifest)
        result = _result(route, out, version, path, manifest)
    else:
        result = _result(route, out)
    result.seconds = time.monotonic() - started
    result.skipped_segments = [s.as_dict() for s in skipped]
    return result


def _run(
    data_dir: Path,
    route: str,
    settings: CurationSettings,
    task: str | None,
    since: datetime | None,
    progress: bool,
    resources: Resources,
) -> StageOutput:
    prior = read_prior_eval(data_dir, route)
    with _progress(progress) as advance:
        scope = Scope(route, task, since)
        state = data_dir / STATE_DIR / route if resources.incremental else None
        return run_plan(data_dir, scope, settings, prior, resources, advance, state)


def _sources(data_dir: Path, route: str, skipped: list[Skipped]) -> dict[str, list[str]]:
    files = {
        key: segment_files(data_dir, table, route, skipped)
        for key, table in (("segments", "requests"), ("feedback_segments", "feedback"))
    }
    return {key: [str(p.relative_to(data_dir)) for p in paths] for key, paths in files.items()}


def _fingerprint(
    sources: dict[str, list[str]],
    settings: CurationSettings,
    task: str | None,
    since: datetime | None,
) -> str:
    """Identity of a run's inputs: segments are immutable, so same names mean same rows."""
    blob = json.dumps(
        [
            sources,
            settings.model_dump(mode="json"),
            task,
            since.isoformat() if since else None,
        ],
        sort_keys=True,
    )
    return hashlib.blake2b(blob.encode(), digest_size=16).hexdigest()


def _latest_with(data_dir: Path, route: str, fingerprint: str) -> int | None:
    """The latest version, if it was made from exactly these inputs."""
    versions = dataset_versions(data_dir, route)
    if not versions:
        return None
    manifest = read_manifest(data_dir, route, versions[-1])
    return versions[-1] if manifest.get("source", {}).get("fingerprint") == fingerprint else None


@contextlib.contextmanager
def _progress(show: bool) -> Iterator[Any]:
    if not show:
        yield lambda name: None
        return
    # On stderr, so that `--json` output on stdout stays parseable.
    with Progress(console=Console(stderr=True), transient=True) as bar:
        job = bar.add_task("curating", total=9)

        def advance(name: str) -> None:
            bar.update(job, advance=1, description=f"curating: {name}")

        yield advance


def _filter_text(task: str | None, since: datetime | None) -> str:
    parts = [f"task {task!r}" if task else "", f"since {since.isoformat()}" if since else ""]
    return " and ".join(p for p in parts if p) or "the filters"


def _result(
    route: str,
    out: StageOutput,
    version: int | None = None,
    path: Path | None = None,
    manifest: dict[str, Any] | None = None,
) -> CurationResult:
    status: Literal["written", "empty"] = "empty" if version is None else "written"
    if version is None:
        message = f"No row of route {route!r} survived curation (see the stages); nothing written."
    else:
        message = (
            f"Wrote dataset v{version} for route {route!r}: {len(out.train)} train and "
            f"{len(out.evaluation)} eval rows from {out.rows_read} logged."
        )
    return CurationResult(
        route, status, message, version=version, path=path, manifest=manifest,
        stages=out.reports, clusters=out.clusters,
        counts=_counts(out), skipped=out.skipped, novel_note=out.novel.note,
    )  # fmt: skip


def _counts(out: StageOutput) -> dict[str, int]:
    novel = sum(p.request_id in out.novel.request_ids for p in out.evaluation)
    return {"train": len(out.train), "eval": len(out.evaluation),
            "eval_in_distribution": len(out.evaluation) - novel, "eval_novel": novel}  # fmt: skip


def _manifest(
    route: str,
    settings: CurationSettings,
    task: str | None,
    since: datetime | None,
    sources: dict[str, list[str]],
    fingerprint: str,
    out: StageOutput,
) -> dict[str, Any]:
    return {
        "format": MANIFEST_FORMAT,
        "route": route,
        "version": None,  # set when the version number is taken
        "created_at": datetime.now(UTC).isoformat(),
        "task": task,
        "since": since.isoformat() if since else None,
        "source": {
            **sources,
            "fingerprint": fingerprint,
            "rows_read": out.rows_read,
            "read": out.read,
        },
        "settings": settings.model_dump(mode="json"),
        "counts": _counts(out),
        "stages": [r.to_json() for r in out.reports],
        "novel": out.novel.to_json(list(settings.span_detectors)),
        "clusters": [c.to_json() for c in out.clusters],
        "skipped": out.skipped[:SKIPPED_LISTED],
        "skipped_total": len(out.skipped) if out.skipped_total is None else out.skipped_total,
        "reference": out.reference.to_json(),
    }


def _write_version(
    data_dir: Path, route: str, out: StageOutput, manifest: dict[str, Any]
) -> tuple[int, Path]:
    root = dataset_root(data_dir, route)
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".tmp-{uuid.uuid4().hex}"
    tmp.mkdir()
    try:
        _write_parquet(dataset_table(out.train, out.novel), tmp / "train.parquet")
        _write_parquet(dataset_table(out.evaluation, out.novel, True), tmp / "eval.parquet")
        for _ in range(100):
            version = _next_version(root)
            manifest["version"] = version
            (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str))
            _fsync(tmp / "manifest.json")
            _fsync(tmp)
            try:
                os.rename(tmp, root / f"v{version}")
            except OSError:
                continue  # another job took this number first
            _fsync(root)
            return version, root / f"v{version}"
        raise RuntimeError(f"Could not claim a dataset version under {root}; remove stray folders.")
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _next_version(root: Path) -> int:
    taken = [int(c.name[1:]) for c in root.iterdir() if c.name[:1] == "v" and c.name[1:].isdigit()]
    return max(taken, default=0) + 1


def _write_parquet(table: pa.Table, path: Path) -> None:
    pq.write_table(table, path, compression="zstd")
    _fsync(path)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
