"""The row-local stages on Ray Data: a cluster reads the shared store's segments and writes the
work table, for logs whose parsing and scrubbing outgrow one machine's cores.

Why Ray Data rather than Spark: the stages are Python functions over Arrow batches
(`curation.rows.curated`, `work_columns`), and Ray Data runs exactly those on Arrow blocks,
with no JVM and no Python-JVM copy between them; it installs from PyPI alone, and a test runs
it on a local cluster. What stays on one node is the plan's SQL over the work table (dedupe,
balance: `curation.groups`, `curation.caps`), which holds a few columns per surviving pair
rather than the log, and the kept rows.

Each task returns its batch's work rows plus one carrier row (no request id) holding the
batch's stage reports and skipped ids as JSON, so the driver sums what every batch dropped.
Work rows are numbered on the driver, in request id order, once all tasks are done.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from curation.parts import part_path
from curation.report import StageReport
from curation.rows import WORK_SCHEMA, RowContext, curated, work_columns
from curation.scan import Scope, filters_arrow

CARRIED = pa.schema([*WORK_SCHEMA, pa.field("carried", pa.large_string())])


def fill_with_ray(
    con: duckdb.DuckDBPyConnection,
    scope: Scope,
    ctx: RowContext,
    files: list[Path],
    batch_rows: int,
    out: Path,
    first_pos: int,
    parts: Path,
) -> int:
    """Run the row-local stages on Ray over `files`, their work rows written as one part into
    `parts` (`curation.parts`), numbering rows from `first_pos`; returns the next number.

    `repeats` (made by `count_rows`) tells which older copies of repeated ids to leave out."""
    import ray  # only this engine needs it

    older = con.execute(
        f"SELECT r.request_id, r.seq FROM {scope.table} r JOIN repeats p USING (request_id) "
        "WHERE r.seq < p.seq"
    ).fetchall()
    stage = _stage(scope, ctx, {(str(rid), int(seq)) for rid, seq in older})
    dataset = ray.data.read_parquet([str(p) for p in files]) if files else None
    out.mkdir(parents=True, exist_ok=True)
    if dataset is not None:
        mapped = dataset.map_batches(stage, batch_format="pyarrow", batch_size=batch_rows)
        mapped.write_parquet(str(out))
    return _load(con, ctx, out, first_pos, parts)


def _stage(
    scope: Scope, ctx: RowContext, older: set[tuple[str, int]]
) -> Callable[[pa.Table], pa.Table]:
    settings, partitions = ctx.settings, ctx.partitions
    verdicts, by_pair = ctx.verdicts, ctx.by_pair

    def run(batch: pa.Table) -> pa.Table:
        batch = batch.filter(filters_arrow(batch, scope))
        if older:
            keep = [(r, s) not in older for r, s in zip(
                batch.column("request_id").to_pylist(), batch.column("seq").to_pylist(),
                strict=True)]  # fmt: skip
            batch = batch.filter(pa.array(keep, pa.bool_()))
        local = RowContext(settings, partitions, verdicts, by_pair)
        seqs = dict(
            zip(
                batch.column("request_id").to_pylist(), batch.column("seq").to_pylist(), strict=True
            )
        )
        pairs = (
            [] if batch.num_rows == 0 else curated(batch.combine_chunks().to_batches()[0], local)
        )
        rows = work_columns(pairs, seqs, 0, settings)
        rows = rows.append_column("carried", pa.nulls(rows.num_rows, pa.large_string()))
        carrier: dict[str, list[str | None]] = {name: [None] for name in WORK_SCHEMA.names}
        report = [asdict(r) for r in local.tally.stages.values()]
        blob = {"stages": report, "skipped": local.skipped, "skipped_total": local.skipped_total}
        carrier["carried"] = [json.dumps(blob)]
        return pa.concat_tables([rows, pa.table(carrier, schema=CARRIED)])

    return run


def _load(
    con: duckdb.DuckDBPyConnection, ctx: RowContext, out: Path, first_pos: int, parts: Path
) -> int:
    files = sorted(out.glob("*.parquet"))
    if not files:
        return first_pos
    listing = ", ".join("'" + str(p).replace("'", "''") + "'" for p in files)
    scan = f"read_parquet([{listing}])"
    for (blob,) in con.execute(f"SELECT carried FROM {scan} WHERE request_id IS NULL").fetchall():
        data: dict[str, Any] = json.loads(blob)
        for stage in data["stages"]:
            ctx.tally.add(StageReport(**stage))
        room = max(0, 1000 - len(ctx.skipped))
        ctx.skipped.extend(data["skipped"][:room])
        ctx.skipped_total += int(data["skipped_total"])
    columns = ", ".join(n for n in WORK_SCHEMA.names if n != "pos")
    path = str(part_path(parts, first_pos)).replace("'", "''")
    con.execute(
        f"COPY (SELECT row_number() OVER (ORDER BY request_id) - 1 + {first_pos} "
        f"AS pos, {columns} FROM {scan} WHERE request_id IS NOT NULL) TO '{path}' "
        "(FORMAT parquet)"
    )
    rows = con.execute(f"SELECT count(*) FROM read_parquet('{path}')").fetchall()[0][0]
    return first_pos + int(rows)
