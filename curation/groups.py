"""Exact and near-duplicate groups of the whole log, in SQL over the work table.

The same rules as `curation.dedupe`, planned for a log that does not fit in memory:

- exact groups: rows sharing `exact_key`; each group's representative is its oldest row;
- near duplicates among representatives: rows sharing an LSH band key (computed per batch in
  `curation.rows`) are linked to the bucket's oldest member and to the previous one, which
  keeps candidates linear in bucket size; a candidate is confirmed by the Jaccard estimate
  of the two MinHash signatures, read in batches; groups are the connected components;
- each group keeps its best row: corrected, then best rated, then newest.

Only confirmed candidate edges are held in Python (numpy arrays, one pair of ints each).
"""

from __future__ import annotations

from collections import Counter

import duckdb
import numpy as np
import pyarrow as pa

from curation.graph import connected_components
from curation.report import StageReport
from curation.scan import register
from curation.settings import CurationSettings

CONFIRM_BATCH = 65_536


def group_rows(con: duckdb.DuckDBPyConnection, settings: CurationSettings) -> StageReport:
    """Make `grouped` (pos, grp: each row's group) and `best` (one row per group: the kept
    pos, the group's oldest request id and size); report what dedupe dropped."""
    con.execute(
        "CREATE OR REPLACE TEMP TABLE reps AS SELECT exact_key, "
        "arg_min(pos, (started_at, request_id)) AS rep FROM w.work GROUP BY exact_key"
    )
    _candidates(con)
    u, v = _confirmed(con, settings)
    register(con, "near", _components(u, v))
    con.execute(
        "CREATE OR REPLACE TEMP TABLE grouped AS SELECT w.pos, coalesce(n.grp, r.rep) AS grp, "
        "w.exact_key FROM w.work w JOIN reps r USING (exact_key) "
        "LEFT JOIN near n ON n.pos = r.rep"
    )
    con.execute(
        "CREATE OR REPLACE TEMP TABLE best AS SELECT g.grp, "
        "arg_max(w.pos, (w.corrected, coalesce(w.score, 0.0), w.started_at, w.request_id)) "
        "AS pos, arg_min(w.request_id, (w.started_at, w.request_id)) AS oldest, "
        "count(*) AS members FROM grouped g JOIN w.work w USING (pos) GROUP BY g.grp"
    )
    exact, near = con.execute(
        "SELECT count(*) FILTER (WHERE g.exact_key = k.exact_key), "
        "count(*) FILTER (WHERE g.exact_key <> k.exact_key) FROM grouped g "
        "JOIN best b USING (grp) JOIN grouped k ON k.pos = b.pos WHERE g.pos <> b.pos"
    ).fetchall()[0]
    rows_in = int(con.execute("SELECT count(*) FROM w.work").fetchall()[0][0])
    rows_out = int(con.execute("SELECT count(*) FROM best").fetchall()[0][0])
    dropped = Counter({"exact_duplicate": int(exact), "near_duplicate": int(near)})
    return StageReport.of("dedupe", rows_in, rows_out, +dropped, Counter())


def _candidates(con: duckdb.DuckDBPyConnection) -> None:
    """`edges` (u, v): representatives sharing a band bucket, each linked to the bucket's
    oldest and previous member."""
    # Representatives are ranked by age once, so the window below sorts (key, rank) integers
    # rather than timestamps and ids: bands times representatives rows, spilling at 10M.
    con.execute(
        "CREATE OR REPLACE TEMP TABLE edges AS "
        "WITH r AS (SELECT w.pos, w.bands, row_number() OVER (ORDER BY w.started_at, "
        "  w.request_id) AS age FROM w.work w JOIN reps r ON w.pos = r.rep), "
        "b AS (SELECT pos, age, unnest(bands) AS key FROM r), "
        "o AS (SELECT pos, first_value(pos) OVER win AS head, lag(pos) OVER win AS prev "
        "  FROM b WINDOW win AS (PARTITION BY key ORDER BY age)) "
        "SELECT DISTINCT least(pos, x) AS u, greatest(pos, x) AS v FROM ("
        "  SELECT pos, head AS x FROM o WHERE head <> pos "
        "  UNION ALL SELECT pos, prev AS x FROM o WHERE prev IS NOT NULL AND prev <> head)"
    )


def _confirmed(
    con: duckdb.DuckDBPyConnection, settings: CurationSettings
) -> tuple[np.ndarray, np.ndarray]:
    """The candidate edges whose signatures agree on at least `dedupe_threshold` of slots."""
    reader = con.sql(
        "SELECT e.u, e.v, a.sig AS su, b.sig AS sv FROM edges e "
        "JOIN w.work a ON a.pos = e.u JOIN w.work b ON b.pos = e.v"
    ).to_arrow_reader(CONFIRM_BATCH)
    us: list[np.ndarray] = []
    vs: list[np.ndarray] = []
    for batch in reader:
        su = _matrix(batch.column("su"), settings.num_perm)
        sv = _matrix(batch.column("sv"), settings.num_perm)
        keep = (su == sv).mean(axis=1) >= settings.dedupe_threshold
        us.append(batch.column("u").to_numpy()[keep])
        vs.append(batch.column("v").to_numpy()[keep])
    if not us:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    return np.concatenate(us).astype(np.int64), np.concatenate(vs).astype(np.int64)


def _matrix(column: pa.Array | pa.ChunkedArray, width: int) -> np.ndarray:
    """The signatures of a binary column as rows of a matrix, read from Arrow's buffer (a
    Python bytes object per signature cost ~30 s at 10M rows)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    column = column.cast(pa.large_binary())
    _, offsets_buffer, data = column.buffers()
    offsets = np.frombuffer(offsets_buffer, dtype=np.int64)[
        column.offset : column.offset + len(column) + 1
    ]
    if column.null_count or not (np.diff(offsets) == 4 * width).all():
        raise ValueError("work table signatures are not all num_perm slots wide")
    start = int(offsets[0]) if len(offsets) else 0
    words = np.frombuffer(data, dtype=np.uint8)[start : start + 4 * width * len(column)]
    return words.view(np.uint32).reshape(-1, width)


def _components(u: np.ndarray, v: np.ndarray) -> pa.Table:
    """(pos, grp) of every row on a confirmed edge; grp is its component's smallest pos."""
    nodes = np.unique(np.concatenate([u, v]))
    labels = connected_components(len(nodes), np.searchsorted(nodes, u), np.searchsorted(nodes, v))
    return pa.table({"pos": nodes.astype(np.int64), "grp": nodes[labels].astype(np.int64)})
