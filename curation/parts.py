"""The work table as Parquet part files, one per batch, and `w.work` as a view over them.

The row-local stages write each batch's work rows (`curation.rows.WORK_SCHEMA`) where they run,
in a worker process or on a Ray node, as one part file: no batch travels back to the planning
process, and no row goes through an insert. Inserting into a DuckDB table cost about 36 s per
million rows on this machine (its compression runs on one thread), writing the same rows as
Snappy Parquet about 4 s, and DuckDB scans the parts in parallel for the SQL stages.

Row numbers (`pos`) are given out per batch before it is processed: a batch of n logged rows
owns [base, base + n), and its surviving rows take the first numbers of that range, so every
part can be written without knowing what the others kept. Numbers are unique, not dense;
nothing downstream needs them dense.

The reservoir of an incremental run (`curation.watermark`) is the same part files, hard-linked
into the route's state folder and back: saving the work rows of ten million pairs is a few
thousand links, not a rewrite.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from curation.rows import WORK_SCHEMA, RowContext, curated, work_columns

_EMPTY = "part-empty.parquet"  # the view needs one file, of the right schema, to exist


def part_path(folder: Path, base: int) -> Path:
    """Where the part whose row numbers start at `base` is written."""
    return folder / f"part-{base:020d}.parquet"


def write_part(rows: pa.Table, path: Path) -> None:
    """One batch's work rows, written under a temporary name and renamed whole."""
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(rows, tmp, compression="snappy")
    os.replace(tmp, path)


def start(folder: Path) -> None:
    """An empty parts folder (with the empty part that gives the view its schema)."""
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(WORK_SCHEMA.empty_table(), folder / _EMPTY)


def part_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("part-*.parquet"))


def create_view(con: duckdb.DuckDBPyConnection, folder: Path) -> None:
    """`w.work`: every part in `folder`, as one table."""
    listing = ", ".join("'" + str(p).replace("'", "''") + "'" for p in part_files(folder))
    con.execute(f"CREATE OR REPLACE VIEW w.work AS SELECT * FROM read_parquet([{listing}])")


def link_parts(source: Path, target: Path) -> None:
    """Every part of `source` also in `target` (hard links; a copy across file systems)."""
    target.mkdir(parents=True, exist_ok=True)
    for part in part_files(source):
        if part.name == _EMPTY:
            continue
        try:
            os.link(part, target / part.name)
        except OSError:
            shutil.copy2(part, target / part.name)


def curate_part(batch: pa.RecordBatch, ctx: RowContext, base: int, folder: Path) -> int:
    """The row-local stages on one batch, its work rows written as the part numbered from
    `base` (nothing written when no row survives); returns how many rows it holds."""
    ids, seqs = batch.column("request_id").to_pylist(), batch.column("seq").to_pylist()
    pairs = curated(batch, ctx)
    if not pairs:
        return 0
    rows = work_columns(pairs, dict(zip(ids, seqs, strict=True)), base, ctx.settings)
    write_part(rows, part_path(folder, base))
    return int(rows.num_rows)
