"""Stage 6, balance: one frequent kind of request must not drown the rest.

Clustering, within each task: prompts become hashed word vectors (256 buckets, sublinear tf,
square-rooted idf, numbers left out since they tell instances of a request type apart rather
than types; L2-normalised). Seeds are chosen by farthest-first traversal (the first is the
oldest prompt; the next is always the prompt least similar to every seed so far) until every
prompt has cosine >= `cluster_similarity` to a seed or `max_clusters` is reached. Three rounds
of spherical k-means refine the clusters; then clusters whose centroids are that similar are
merged and re-centred until none are. Why this: it is deterministic without restarts, every
step is a matrix product, it needs no k, and the merge undoes k-means' habit of splitting a
dominant request type into several clusters by mass, which would hide it from the cap below.
The idf is dampened (square root) because a request type is defined by the words all its
instances share, which full idf would discount most. MinHash buckets were the alternative;
they split a template whose slots vary, since two instances share few exact shingles while
their word profiles still match.

Capping: the largest cluster size C such that C <= share * sum(min(size, C)) over clusters,
found by fixed-point iteration; the share is raised to 1/clusters when there are too few to
meet it, and C never drops below `cluster_cap_min_rows`. A capped cluster keeps every row that
was in a previous eval split, even past the cap (so it can stay there), then the heaviest rows,
then rows in a stable hash order, which samples the cluster evenly rather than by time.
"""

from __future__ import annotations

import hashlib
from collections import Counter

import numpy as np
import numpy.typing as npt

from curation.graph import connected_components
from curation.pairs import Pair, prompt_text
from curation.report import ClusterRow, StageReport
from curation.settings import CurationSettings
from curation.words import Words, split_words

DIMENSIONS = 256
KMEANS_ROUNDS = 3
BATCH_TEXTS = 8192
F32 = npt.NDArray[np.float32]


def prompt_vectors(texts: list[str]) -> F32:
    """Hashed TF-IDF word vectors (sublinear tf), one L2-normalised row per text."""
    x = term_vectors(texts)
    return weighted(x, idf_weights(x))


def idf_weights(x: F32) -> F32:
    """The dampened idf of each bucket over the texts of `x` (term vectors)."""
    df = (x > 0).sum(axis=0)
    weights: F32 = np.sqrt(np.log((1 + len(x)) / (1 + df)) + 1).astype(np.float32)
    return weights


def weighted(x: F32, idf: F32) -> F32:
    """Term vectors times `idf`, L2-normalised in place (the out-of-core balance reuses a
    sample's idf for every batch, so that all rows live in one space)."""
    x *= idf
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    np.divide(x, norms, out=x, where=norms > 0)
    return x


def term_vectors(texts: list[str]) -> F32:
    """Sublinear tf of hashed words, numbers left out; one row per text, not yet weighted."""
    x = np.empty((len(texts), DIMENSIONS), dtype=np.float32)
    for lo in range(0, len(texts), BATCH_TEXTS):  # batches bound the temporaries
        buckets, lengths = term_buckets(split_words(texts[lo : lo + BATCH_TEXTS]))
        x[lo : lo + len(lengths)] = bucket_vectors(buckets, lengths)
    return x


def term_buckets(words: Words) -> tuple[npt.NDArray[np.uint16], npt.NDArray[np.int64]]:
    """(bucket of every word that is not a number, in order; how many each text has): what
    `term_vectors` counts, kept per work row so balance never splits a prompt again."""
    cols = (words.hashes() % np.uint64(DIMENSIONS)).astype(np.uint16)
    # Numbers (ids, amounts, dates) tell instances of one request type apart, not types.
    numeric = np.array([w.isdigit() for w in words.vocabulary], dtype=bool)
    wordy = ~numeric[words.codes] if len(words.codes) else np.zeros(0, dtype=bool)
    text_of = np.repeat(np.arange(len(words.lengths), dtype=np.int64), words.lengths)
    lengths = np.bincount(text_of[wordy], minlength=len(words.lengths)).astype(np.int64)
    return cols[wordy], lengths


def bucket_vectors(buckets: npt.NDArray[np.uint16], lengths: npt.NDArray[np.int64]) -> F32:
    """Term vectors (not yet weighted) from `term_buckets`."""
    n = len(lengths)
    rows = np.repeat(np.arange(n, dtype=np.int64), lengths)
    tf = np.bincount(rows * DIMENSIONS + buckets, minlength=n * DIMENSIONS)
    x: F32 = np.log1p(tf.reshape(n, DIMENSIONS)).astype(np.float32)
    return x


def cluster_prompts(
    texts: list[str], similarity: float, max_clusters: int
) -> tuple[npt.NDArray[np.int64], list[int]]:
    """(cluster of each text, numbered from 0, and the most central text of each cluster)."""
    labels, central, _ = fit_clusters(prompt_vectors(texts), similarity, max_clusters)
    return labels, central


def fit_clusters(
    x: F32, similarity: float, max_clusters: int
) -> tuple[npt.NDArray[np.int64], list[int], F32]:
    """`cluster_prompts` on vectors: (labels, most central row of each cluster, centroids)."""
    seeds = [0]
    best = x @ x[0]
    while len(seeds) < max_clusters:
        candidate = int(np.argmin(best))
        if best[candidate] >= similarity:
            break
        seeds.append(candidate)
        best = np.maximum(best, x @ x[candidate])
    centroids = x[seeds]
    for _ in range(KMEANS_ROUNDS):
        labels = np.argmax(x @ centroids.T, axis=1)
        centroids = _centroids(x, labels, len(centroids))
    # Merge clusters whose centroids are alike, re-centre, repeat: a merged centroid can come
    # close enough to another that was not close to either half.
    while True:
        labels = np.argmax(x @ centroids.T, axis=1)
        close = np.argwhere(np.triu(centroids @ centroids.T, k=1) >= similarity)
        merged = connected_components(len(centroids), close[:, 0], close[:, 1])
        _, labels = np.unique(merged[labels], return_inverse=True)
        centroids = _centroids(x, labels, int(labels.max()) + 1)
        if len(close) == 0:
            break
    fit = np.einsum("ij,ij->i", x, centroids[labels])
    central = [
        int(np.flatnonzero(labels == c)[np.argmax(fit[labels == c])]) for c in range(len(centroids))
    ]
    return labels.astype(np.int64), central, centroids


def _centroids(x: F32, labels: npt.NDArray[np.intp], k: int) -> F32:
    sums = np.zeros((k, x.shape[1]), dtype=np.float32)
    np.add.at(sums, labels, x)
    norms = np.linalg.norm(sums, axis=1, keepdims=True)
    unit: F32 = np.divide(sums, norms, out=np.zeros_like(sums), where=norms > 0)
    return unit


def cluster_cap(sizes: list[int], share: float, floor: int) -> int:
    """The most rows any one cluster may keep (see the module docstring)."""
    share = max(share, 1.0 / len(sizes))
    cap = max(sizes)
    while True:
        total = sum(min(size, cap) for size in sizes)
        new = max(int(share * total + 1e-9), floor)
        if new >= cap:
            return cap
        cap = new


def within_max_rows(sizes: list[int], cap: int, max_rows: int) -> int:
    """The largest cap <= `cap` under which the clusters keep at most `max_rows` rows in all
    (never below 1: each cluster keeps a row)."""
    lo, hi = 1, cap
    if sum(min(size, cap) for size in sizes) <= max_rows:
        return cap
    while lo < hi:  # kept rows grow with the cap: bisect for the last cap that fits
        mid = (lo + hi + 1) // 2
        if sum(min(size, mid) for size in sizes) <= max_rows:
            lo = mid
        else:
            hi = mid - 1
    return lo


def balance_pairs(
    pairs: list[Pair], settings: CurationSettings, protected: frozenset[str] = frozenset()
) -> tuple[list[Pair], StageReport, list[ClusterRow]]:
    """Cluster prompts per task, cap the common clusters, optionally up-weight the rare ones."""
    if not pairs:
        return pairs, StageReport.of("balance", 0, 0, Counter(), Counter()), []
    members, examples = _assign_clusters(pairs, settings)
    cap = cluster_cap(
        [len(m) for m in members.values()],
        settings.cluster_cap_share,
        settings.cluster_cap_min_rows,
    )
    cap = within_max_rows([len(m) for m in members.values()], cap, settings.max_rows)
    dropped: Counter[str] = Counter()
    kept: dict[str, list[Pair]] = {}
    for cid, rows in members.items():
        order = [_keep_order(p, protected) for p in rows]
        ranked = [p for _, p in sorted(zip(order, rows, strict=True), key=lambda t: t[0])]
        # Rows an earlier eval held are never capped away: eval stays comparable over time.
        limit = max(cap, sum(1 for key in order if not key[0]))
        kept[cid] = ranked[:limit]
        if len(rows) > limit:
            dropped["cluster_cap"] += len(rows) - limit
    total = sum(len(rows) for rows in kept.values())
    changed: Counter[str] = Counter()
    table: list[ClusterRow] = []
    for cid, rows in kept.items():
        factor = 1.0
        share = len(rows) / total
        if settings.oversample and share < settings.rare_share:
            factor = round(min(settings.rare_share / share, settings.max_oversample), 3)
            for pair in rows:
                pair.weight *= factor
            changed["oversampled"] += len(rows)
        table.append(
            ClusterRow(cid, rows[0].task, len(members[cid]), len(rows), factor, examples[cid])
        )
    out = sorted(
        (p for rows in kept.values() for p in rows), key=lambda p: (p.started_at, p.request_id)
    )
    table.sort(key=lambda row: (-row.size_before, row.id))
    return out, StageReport.of("balance", len(pairs), len(out), dropped, changed), table


def _assign_clusters(
    pairs: list[Pair], settings: CurationSettings
) -> tuple[dict[str, list[Pair]], dict[str, str]]:
    """Cluster id -> pairs (ids ranked by size within their task), and each centre's text."""
    by_task: dict[str | None, list[Pair]] = {}
    for pair in pairs:
        by_task.setdefault(pair.task, []).append(pair)
    members: dict[str, list[Pair]] = {}
    examples: dict[str, str] = {}
    for task, rows in sorted(by_task.items(), key=lambda kv: kv[0] or ""):
        texts = [prompt_text(p.messages) for p in rows]
        labels, centres = cluster_prompts(texts, settings.cluster_similarity, settings.max_clusters)
        ranked = np.argsort(-np.bincount(labels, minlength=len(centres)), kind="stable")
        prefix = f"{task}/" if task else ""
        for rank, label in enumerate(ranked):
            cid = f"{prefix}c{rank}"
            members[cid] = [rows[i] for i in np.flatnonzero(labels == label)]
            examples[cid] = " ".join(texts[centres[label]].split())[:80]
            for pair in members[cid]:
                pair.cluster = cid
    return {cid: rows for cid, rows in members.items() if rows}, examples


def _keep_order(pair: Pair, protected: frozenset[str]) -> tuple[bool, float, str]:
    was_eval = any(rid in protected for rid in pair.group_members or [pair.request_id])
    digest = hashlib.blake2b(pair.request_id.encode(), digest_size=8).hexdigest()
    return (not was_eval, -pair.weight, digest)
