"""The curation stages as a plan over the sealed log, in bounded memory, for any number of rows.

`curation.pipeline` runs the stages on a Python list of every pair: simple, and the reference
the tests compare with, but it holds ~8 KB per logged row. Here the same stages run so that
memory does not grow with the log:

1. DuckDB counts the rows, finds repeated ids and each task's newest partition, and streams
   the latest rows to Python in batches (`curation.scan`), under a memory limit, spilling to
   a work folder past it.
2. Each batch goes through the row-local stages (select, quality, feedback, scrub), in a
   worker process when there are several, and leaves only a few columns per surviving pair
   in a Parquet part written where it ran (`curation.rows`, `curation.parts`); `w.work` is
   the view over the parts.
3. Dedupe (`curation.groups`) and balance (`curation.caps`) run as SQL over the work table.
4. Only the rows balance keeps are read again and rebuilt as pairs (the same row-local
   stages, deterministic, so the pair is the one step 2 saw); the novel slice, the split and
   the reference statistics run on them as in the pipeline. `CurationSettings.max_rows`
   bounds how many that is.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import duckdb
import pyarrow as pa

from curation import parts
from curation.caps import Balanced, balance_rows
from curation.feedback import Verdict, load_feedback, pair_verdicts
from curation.groups import group_rows
from curation.novel import hold_out_novel
from curation.pairs import Pair
from curation.parts import curate_part
from curation.pipeline import StageOutput
from curation.pool import curated_in_pool
from curation.reference import reference_stats
from curation.report import StageReport
from curation.rows import RowContext, curated
from curation.scan import (
    DEFAULT_RESOURCES,
    Resources,
    Scope,
    configure,
    count_rows,
    latest_batches,
    partitions,
    register,
    set_memory,
)
from curation.settings import CurationSettings
from curation.split import PriorEval, split_pairs
from curation.watermark import Watermark, load, restore, save
from logbook.schema import TABLE_COLUMNS
from logbook.segments import Source, create_view, segment_files
from store.store import Store

ROW_STAGES = ("select", "quality", "feedback", "scrub")
KEPT_MEMORY = "256MB"


def run_plan(
    source: Source,
    scope: Scope,
    settings: CurationSettings,
    prior: PriorEval,
    resources: Resources = DEFAULT_RESOURCES,
    advance: Callable[[str], None] = lambda name: None,
    state_dir: Path | None = None,
) -> StageOutput:
    """Run every stage on the rows in `scope` out of core; same output as `run_stages`.

    state_dir: where the watermark and reservoir of earlier runs live (`curation.watermark`);
    given, the run reads only segments past the watermark when it can, and saves a new one."""
    root = source.root if isinstance(source, Store) else source
    files = {table: segment_files(source, table, scope.route) for table in TABLE_COLUMNS}
    work = Path(tempfile.mkdtemp(prefix="apprentice-curate-", dir=resources.temp_dir))
    con = duckdb.connect(":memory:")
    try:
        configure(con, resources, work / "spill")
        for table, listed in files.items():  # the exact files listed: the watermark names them
            create_view(con, table, table, listed)
        con.execute(f"ATTACH '{work / 'work.duckdb'}' AS w")
        read = Read(root, files, state_dir, work / "parts")
        parts.start(read.parts)
        return _stages(con, scope, settings, prior, resources, advance, read)
    finally:
        con.close()
        shutil.rmtree(work, ignore_errors=True)


@dataclass(frozen=True)
class Read:
    """The segment files a run reads, under `root`, and where its watermark is kept."""

    root: Path
    files: dict[str, list[Path]]
    state_dir: Path | None
    parts: Path  # where the work table's part files are written (`curation.parts`)

    def names(self, table: str) -> list[str]:
        return [str(p.relative_to(self.root)) for p in self.files[table]]


def _stages(
    con: duckdb.DuckDBPyConnection,
    scope: Scope,
    settings: CurationSettings,
    prior: PriorEval,
    resources: Resources,
    advance: Callable[[str], None],
    read: Read,
) -> StageOutput:
    rows_read, repeated = count_rows(con, scope)
    ctx = RowContext(settings, partitions(con, scope), load_feedback(con, scope.route))
    ctx.by_pair = _pair_verdicts(con, scope, ctx, resources)
    # Streaming needs little of DuckDB's memory: what it would cache meanwhile only adds to
    # this process's peak beside the batches in flight.
    set_memory(con, KEPT_MEMORY)
    done = _read_rows(con, scope, ctx, resources, read)
    set_memory(con, resources.memory_limit)
    reports = [_select_report(ctx, rows_read, repeated)]
    reports += [ctx.tally.report(name) for name in ROW_STAGES[1:]]
    for name in ROW_STAGES:
        advance(name)
    reports.append(group_rows(con, settings))
    advance("dedupe")
    ids = pa.array(sorted(prior.request_ids), pa.string())
    register(con, "prior_ids", pa.table({"request_id": ids}))
    balanced = balance_rows(con, settings, resources)
    reports.append(balanced.report)
    advance("balance")
    # From here Python holds the kept pairs; DuckDB only streams them, so its cache of the
    # work table (up to the memory limit) is let go rather than held beside them.
    set_memory(con, KEPT_MEMORY)
    pairs = _kept_pairs(con, scope, ctx, balanced, resources)
    novel, report = hold_out_novel(pairs, settings, prior.novel_keys)
    reports.append(report)
    advance("novel")
    train, evaluation, report = split_pairs(pairs, settings, prior, novel.request_ids)
    reports.append(report)
    advance("split")
    reference = reference_stats(train, settings)
    advance("reference")
    out = StageOutput(
        rows_read, train, evaluation, reports, balanced.clusters, reference, ctx.skipped, novel
    )
    out.skipped_total = ctx.skipped_total
    out.read = done
    return out


def _read_rows(
    con: duckdb.DuckDBPyConnection,
    scope: Scope,
    ctx: RowContext,
    resources: Resources,
    read: Read,
) -> dict[str, int]:
    """Fill `w.work`: from the reservoir plus the segments past the watermark when the
    watermark holds (`curation.watermark`), else from every segment; save the new one.
    Returns how many segments were read and how many work rows came from the reservoir."""
    context = Watermark.digest(ctx, scope.key(), read.names("feedback"))
    names = read.names("requests")
    old = load(read.state_dir) if read.state_dir else None
    new = _past_watermark(con, old, context, read, ctx)
    if old is not None and new is not None and read.state_dir is not None:
        restore(read.state_dir, old, ctx, read.parts)
        create_view(con, "requests_new", "requests", new)
        new_scope = replace(scope, table="requests_new")
        end = _fill(con, new_scope, ctx, resources, new, old.next_pos, read.parts)
    else:
        end = _fill(con, scope, ctx, resources, read.files["requests"], 0, read.parts)
    parts.create_view(con, read.parts)
    if new is not None and old is not None:
        reservoir = con.execute("SELECT count(*) FROM w.work WHERE pos < ?", [old.next_pos])
        done = {"segments_read": len(new), "reservoir_rows": int(reservoir.fetchall()[0][0])}
    else:
        done = {"segments_read": len(names), "reservoir_rows": 0}
    if read.state_dir is not None:
        stages = [asdict(ctx.tally.report(name)) for name in ROW_STAGES]
        listed = Watermark.listed(ctx)
        mark = Watermark(names, context, end, stages, ctx.skipped, ctx.skipped_total, listed)
        save(read.state_dir, mark, read.parts)
    return done


def _past_watermark(
    con: duckdb.DuckDBPyConnection,
    old: Watermark | None,
    context: str,
    read: Read,
    ctx: RowContext,
) -> list[Path] | None:
    """The segment files the old watermark did not read, or None when it does not hold."""
    names = read.names("requests")
    if old is None or not old.holds(context, names, ctx):
        return None
    seen = set(old.segments)
    new = [p for p, name in zip(read.files["requests"], names, strict=True) if name not in seen]
    create_view(con, "requests_probe", "requests", new)
    crossing = con.execute(
        "SELECT count(*) FROM repeats p WHERE p.request_id IN "
        "(SELECT request_id FROM requests_probe)"
    ).fetchall()[0][0]
    return None if crossing else new


def _select_report(ctx: RowContext, rows_read: int, repeated: int) -> StageReport:
    summed = ctx.tally.report("select")
    dropped = Counter(summed.dropped)
    if repeated:
        dropped["repeated_id"] = repeated
    return StageReport.of("select", rows_read, summed.rows_out, dropped, Counter())


def _pair_verdicts(
    con: duckdb.DuckDBPyConnection, scope: Scope, ctx: RowContext, resources: Resources
) -> dict[str, Verdict]:
    """The latest verdict per (prompt, answer) pair, over every rated row that reaches the
    feedback stage: a batch alone cannot see a copy rated in another batch."""
    if not ctx.verdicts:
        return {}
    con.execute(
        "CREATE OR REPLACE TEMP TABLE rated AS SELECT DISTINCT request_id FROM feedback "
        "WHERE route = ?",
        [scope.route],
    )
    probe = RowContext(ctx.settings, ctx.partitions, ctx.verdicts)
    pairs: list[Pair] = []
    extra = "request_id IN (SELECT request_id FROM rated)"
    for batch in latest_batches(con, scope, resources.batch_rows, extra):
        pairs += curated(batch, probe, feedback=False)
    return pair_verdicts(pairs, ctx.verdicts)


def _fill(
    con: duckdb.DuckDBPyConnection,
    scope: Scope,
    ctx: RowContext,
    resources: Resources,
    files: list[Path],
    pos: int,
    folder: Path,
) -> int:
    """The row-local stages on the engine `resources` names, their work rows written as
    parts into `folder`; returns the next row number."""
    if resources.engine == "ray":
        from curation.distributed import fill_with_ray

        out = Path(tempfile.mkdtemp(prefix="apprentice-ray-", dir=resources.temp_dir))
        try:
            return fill_with_ray(
                con, scope, ctx, files, resources.batch_rows, out / "w", pos, folder
            )
        finally:
            shutil.rmtree(out, ignore_errors=True)
    return _fill_work(con, scope, ctx, resources, pos, folder)


def _fill_work(
    con: duckdb.DuckDBPyConnection,
    scope: Scope,
    ctx: RowContext,
    resources: Resources,
    pos: int,
    folder: Path,
) -> int:
    """Stream the latest rows of `scope` through the row-local stages, each batch's work rows
    written as a part numbered from `pos` on; returns the next number."""
    batches = latest_batches(con, scope, resources.batch_rows)
    if resources.workers > 1:
        return curated_in_pool(batches, ctx, resources.workers, pos, folder)
    for batch in batches:
        curate_part(batch, ctx, pos, folder)
        pos += batch.num_rows
    return pos


def _kept_pairs(
    con: duckdb.DuckDBPyConnection,
    scope: Scope,
    ctx: RowContext,
    balanced: Balanced,
    resources: Resources,
) -> list[Pair]:
    """The rows balance kept, rebuilt as pairs with their cluster, weight and dedupe group."""
    con.execute(
        "CREATE OR REPLACE TEMP TABLE final AS SELECT w.request_id, w.seq, k.cid, b.grp, "
        "b.oldest FROM kept k JOIN w.work w USING (pos) JOIN best b ON b.pos = k.pos"
    )
    members = dict(
        con.execute(
            "SELECT g.grp, list(w.request_id ORDER BY w.started_at, w.request_id) "
            "FROM grouped g JOIN w.work w USING (pos) WHERE g.grp IN (SELECT grp FROM final) "
            "GROUP BY g.grp"
        ).fetchall()
    )
    facts = {rid: (cid, grp, oldest) for rid, _, cid, grp, oldest in
             con.execute("SELECT * FROM final").fetchall()}  # fmt: skip
    rebuild = RowContext(ctx.settings, ctx.partitions, ctx.verdicts, ctx.by_pair)
    extra = "EXISTS (SELECT 1 FROM final f WHERE f.request_id = r.request_id AND f.seq = r.seq)"
    pairs: list[Pair] = []
    for batch in latest_batches(con, scope, resources.batch_rows, extra):
        for pair in curated(batch, rebuild):
            cid, grp, oldest = facts[pair.request_id]
            pair.cluster = cid
            pair.weight *= balanced.factors.get(cid, 1.0)
            pair.group_id = hashlib.blake2b(oldest.encode(), digest_size=8).hexdigest()
            pair.group_members = list(members[grp])
            pairs.append(pair)
    pairs.sort(key=lambda p: (p.started_at, p.request_id))
    return pairs
