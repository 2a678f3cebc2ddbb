"""The balance stage over the whole log: clusters per task, caps ranked in SQL.

The rules are `curation.balance`'s. A task with at most `Resources.fit_rows` prompts is
clustered exactly as there. A larger one is fitted on a sample (the prompts first in the stable
hash order, a spread over time) and every prompt is then assigned, batch by batch, to the
nearest fitted centre under the sample's idf: the vectors of all prompts never sit in memory
at once. Capping ranks rows within each cluster in SQL, in `balance._keep_order`'s order.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import duckdb
import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from curation.balance import (
    bucket_vectors,
    cluster_cap,
    fit_clusters,
    idf_weights,
    weighted,
    within_max_rows,
)
from curation.report import ClusterRow, StageReport
from curation.scan import Resources, register
from curation.settings import CurationSettings


@dataclass(frozen=True)
class Balanced:
    report: StageReport
    clusters: list[ClusterRow]
    factors: dict[str, float]  # oversampling factor per cluster id


def balance_rows(
    con: duckdb.DuckDBPyConnection, settings: CurationSettings, resources: Resources
) -> Balanced:
    """Make `kept` (pos, cid): the rows the balance stage keeps, from `best` (dedupe)."""
    examples = _assign(con, settings, resources)
    sizes = dict(con.execute("SELECT cid, count(*) FROM clustered GROUP BY cid").fetchall())
    if not sizes:
        con.execute("CREATE OR REPLACE TEMP TABLE kept AS SELECT pos, cid FROM clustered")
        return Balanced(StageReport.of("balance", 0, 0, Counter(), Counter()), [], {})
    cap = cluster_cap(
        list(sizes.values()), settings.cluster_cap_share, settings.cluster_cap_min_rows
    )
    cap = within_max_rows(list(sizes.values()), cap, settings.max_rows)
    _rank(con)
    con.execute(
        "CREATE OR REPLACE TEMP TABLE kept AS SELECT r.pos, r.cid FROM ranked r JOIN "
        "(SELECT cid, greatest(?, count(*) FILTER (WHERE protected)) AS lim FROM ranked "
        "GROUP BY cid) l USING (cid) WHERE r.rank <= l.lim",
        [cap],
    )
    after = dict(con.execute("SELECT cid, count(*) FROM kept GROUP BY cid").fetchall())
    total = sum(after.values())
    factors: dict[str, float] = {}
    changed: Counter[str] = Counter()
    table: list[ClusterRow] = []
    for cid, size in sizes.items():
        kept, factor = after.get(cid, 0), 1.0
        if settings.oversample and kept and kept / total < settings.rare_share:
            factor = round(min(settings.rare_share / (kept / total), settings.max_oversample), 3)
            changed["oversampled"] += kept
        factors[cid] = factor
        task, example = examples[cid]
        table.append(ClusterRow(cid, task, size, kept, factor, example))
    table.sort(key=lambda row: (-row.size_before, row.id))
    dropped = Counter({"cluster_cap": sum(sizes.values()) - total})
    report = StageReport.of("balance", sum(sizes.values()), total, +dropped, changed)
    return Balanced(report, table, factors)


def _rank(con: duckdb.DuckDBPyConnection) -> None:
    """`ranked`: each row's place in its cluster (rows an earlier eval held first, then the
    heaviest, then the stable hash order) and whether it is protected so."""
    con.execute(
        "CREATE OR REPLACE TEMP TABLE held_groups AS SELECT DISTINCT g.grp FROM grouped g "
        "JOIN w.work w USING (pos) JOIN prior_ids p ON p.request_id = w.request_id"
    )
    con.execute(
        "CREATE OR REPLACE TEMP TABLE ranked AS SELECT c.pos, c.cid, "
        "h.grp IS NOT NULL AS protected, row_number() OVER (PARTITION BY c.cid "
        "ORDER BY h.grp IS NULL, w.weight DESC, w.digest) AS rank FROM clustered c "
        "JOIN w.work w USING (pos) JOIN best b ON b.pos = c.pos "
        "LEFT JOIN held_groups h ON h.grp = b.grp"
    )


def _assign(
    con: duckdb.DuckDBPyConnection, settings: CurationSettings, resources: Resources
) -> dict[str, tuple[str | None, str]]:
    """`clustered` (pos, cid) for every dedupe survivor; returns each cluster's task and
    example prompt."""
    tasks = con.execute(
        "SELECT w.task, count(*) FROM best b JOIN w.work w USING (pos) GROUP BY w.task"
    ).fetchall()
    con.execute("CREATE OR REPLACE TEMP TABLE clustered (pos BIGINT, cid VARCHAR)")
    examples: dict[str, tuple[str | None, str]] = {}
    for task, count in sorted(tasks, key=lambda t: t[0] or ""):
        # Labels go to DuckDB as integers, batch by batch, and are named there once the
        # clusters' sizes are known: held in Python, with a string per row, they were the
        # peak of the 10M-row run.
        con.execute("CREATE OR REPLACE TABLE w.raw_labels (pos BIGINT, label BIGINT)")
        sizes, central = _task_labels(con, task, int(count), settings, resources)
        ranked = np.argsort(-sizes, kind="stable")
        rank_of = np.empty(len(central), dtype=np.int64)
        rank_of[ranked] = np.arange(len(central))
        prefix = f"{task}/" if task else ""
        names = [f"{prefix}c{rank_of[label]}" for label in range(len(central))]
        register(con, "names", pa.table({"label": np.arange(len(names)), "cid": names}))
        con.execute(
            "INSERT INTO clustered SELECT pos, cid FROM w.raw_labels JOIN names USING (label)"
        )
        for label, text in enumerate(central):
            if sizes[label]:
                examples[names[label]] = (task, text)  # folded, cut: `rows`
    return examples


def _store(con: duckdb.DuckDBPyConnection, pos: npt.NDArray[np.int64], labels: Any) -> None:
    """One batch of (pos, cluster label) into `w.raw_labels` (not a temp table: a cursor
    writes it while the connection streams)."""
    con.register("labels_batch", pa.table({"pos": pos, "label": np.asarray(labels, np.int64)}))
    con.execute("INSERT INTO w.raw_labels SELECT pos, label FROM labels_batch")
    con.unregister("labels_batch")


def _task_labels(
    con: duckdb.DuckDBPyConnection,
    task: str | None,
    count: int,
    settings: CurationSettings,
    resources: Resources,
) -> tuple[npt.NDArray[np.int64], list[str]]:
    """Each task survivor's cluster label into `w.raw_labels`; returns (the size of each
    cluster, each cluster's central prompt)."""
    where = "w.task IS NOT DISTINCT FROM ?"
    base = (
        "SELECT w.pos, w.example, w.terms, w.started_at, w.request_id, w.digest FROM best b "
        f"JOIN w.work w USING (pos) WHERE {where}"
    )
    if count <= resources.fit_rows:
        order = f"{base} ORDER BY w.started_at, w.request_id"
        rows = con.sql(order, params=[task]).to_arrow_table()
        texts = rows.column("example").to_pylist()
        x = _vectors(rows.column("terms"))
        labels, central, _ = fit_clusters(
            weighted(x, idf_weights(x)), settings.cluster_similarity, settings.max_clusters
        )
        _store(con, rows.column("pos").to_numpy(), labels)
        return np.bincount(labels, minlength=len(central)), [texts[i] for i in central]
    return _fit_and_assign(con, task, base, where, settings, resources)


def _fit_and_assign(
    con: duckdb.DuckDBPyConnection,
    task: str | None,
    base: str,
    where: str,
    settings: CurationSettings,
    resources: Resources,
) -> tuple[npt.NDArray[np.int64], list[str]]:
    """`_task_labels` of a task too large to cluster whole: fitted on a sample, then every
    row assigned to the nearest centre, batch by batch."""
    sample = con.sql(
        f"SELECT pos, example, terms FROM ({base} ORDER BY w.digest "
        f"LIMIT {resources.fit_rows}) ORDER BY started_at, request_id",
        params=[task],
    ).to_arrow_table()
    texts = sample.column("example").to_pylist()
    x = _vectors(sample.column("terms"))
    idf = idf_weights(x)
    _, central, centroids = fit_clusters(
        weighted(x, idf), settings.cluster_similarity, settings.max_clusters
    )
    del x
    sizes = np.zeros(len(central), dtype=np.int64)
    scan = f"SELECT w.pos, w.terms FROM best b JOIN w.work w USING (pos) WHERE {where}"
    writer = con.cursor()  # the reading connection is busy streaming until the last batch
    for batch in con.sql(scan, params=[task]).to_arrow_reader(resources.batch_rows):
        vectors = weighted(_vectors(batch.column("terms")), idf)
        labels = np.argmax(vectors @ centroids.T, axis=1).astype(np.int64)
        sizes += np.bincount(labels, minlength=len(central))
        _store(writer, batch.column("pos").to_numpy(), labels)
    writer.close()
    return sizes, [texts[i] for i in central]


def _vectors(terms: pa.ChunkedArray | pa.Array) -> npt.NDArray[np.float32]:
    """Term vectors of work rows, from their stored word buckets (`balance.term_buckets`)."""
    if isinstance(terms, pa.ChunkedArray):
        terms = terms.combine_chunks()
    lengths = pc.list_value_length(terms).fill_null(0).to_numpy().astype(np.int64)
    buckets = pc.list_flatten(terms).to_numpy(zero_copy_only=False).astype(np.uint16)
    return bucket_vectors(buckets, lengths)
