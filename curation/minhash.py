"""MinHash signatures and LSH banding over word shingles, vectorised with numpy.

Words (`curation.words`) are hashed with CRC-32 (stable across processes, unlike `hash()`),
k consecutive word hashes are mixed into one 64-bit shingle hash and finalised, and each
permutation is `(a*x + b) mod 2^32` on the hash's high 32 bits, with odd `a` drawn from a
seeded generator, so signatures are the same on every run and machine. On well-mixed inputs
this 32-bit family estimates Jaccard as accurately as 64-bit multiply-shift (measured: same
error spread at J = 0.5, 0.85, 0.95) and runs ~20x faster. The fraction of equal signature
entries estimates the Jaccard similarity of two shingle sets.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import lru_cache

import numpy as np
import numpy.typing as npt

from curation.words import Words, split_words

U32 = npt.NDArray[np.uint32]
U64 = npt.NDArray[np.uint64]
I64 = npt.NDArray[np.int64]

_MIX = np.uint64(0x9E3779B97F4A7C15)
_FINAL = np.uint64(0xBF58476D1CE4E5B9)
# Shingles permuted at once: ~2 MB of temporaries stay in cache (25% faster than 32 MB).
_CHUNK_SHINGLES = 1 << 12
_BATCH_TEXTS = 8192


def shingle_hashes(flat: U64, lengths: I64, k: int) -> tuple[U64, I64]:
    """(hash of every k-word shingle, index of the first shingle of each doc).

    A doc shorter than k words yields one shingle of all its words; an empty doc one constant
    shingle, so every doc has at least one.
    """
    n = len(lengths)
    word_start = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    word_end = word_start + lengths
    counts = np.maximum(lengths - k + 1, 1)
    first = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    doc_of = np.repeat(np.arange(n, dtype=np.int64), counts)
    pos = word_start[doc_of] + (np.arange(len(doc_of), dtype=np.int64) - first[doc_of])
    padded = np.concatenate([flat, np.zeros(k, dtype=np.uint64)])
    hashes = np.zeros(len(doc_of), dtype=np.uint64)
    for j in range(k):
        index = pos + j
        word = np.where(index < word_end[doc_of], padded[index], np.uint64(0))
        hashes = (hashes ^ (word + np.uint64(j + 1))) * _MIX
    hashes ^= hashes >> np.uint64(31)
    hashes *= _FINAL
    hashes ^= hashes >> np.uint64(29)
    return hashes, first


def signatures(texts: Sequence[str], k: int, num_perm: int, seed: int) -> U32:
    """MinHash signatures (texts x num_perm, uint32) of the texts' k-word shingle sets."""
    out = np.empty((len(texts), num_perm), dtype=np.uint32)
    # Texts go in batches so that words and shingles of all texts never sit in memory at once.
    for lo in range(0, len(texts), _BATCH_TEXTS):
        words = split_words(texts[lo : lo + _BATCH_TEXTS])
        out[lo : lo + len(words.lengths)] = word_signatures(words, k, num_perm, seed)
    return out


def word_signatures(words: Words, k: int, num_perm: int, seed: int) -> U32:
    """`signatures` of texts already split (the work rows split each batch once)."""
    rng = np.random.default_rng(seed)
    a = rng.integers(1, 2**32, size=num_perm, dtype=np.uint32) | np.uint32(1)
    b = rng.integers(0, 2**32, size=num_perm, dtype=np.uint32)
    out = np.empty((len(words.lengths), num_perm), dtype=np.uint32)
    if not len(words.lengths):
        return out
    hashes, first = shingle_hashes(words.hashes(), words.lengths, k)
    high = (hashes >> np.uint64(32)).astype(np.uint32)
    for start_doc, stop_doc in _doc_chunks(first, len(high)):
        start = first[start_doc]
        stop = first[stop_doc] if stop_doc < len(first) else len(high)
        # Permutations x shingles, so each doc's minimum is a contiguous reduction.
        values = a[:, None] * high[None, start:stop]  # wraps mod 2^32
        values += b[:, None]
        reduced = np.minimum.reduceat(values, first[start_doc:stop_doc] - start, axis=1)
        out[start_doc:stop_doc] = reduced.T
    return out


def _doc_chunks(first: I64, total: int) -> Iterable[tuple[int, int]]:
    """Doc ranges whose shingles number about `_CHUNK_SHINGLES` (at least one doc each)."""
    lo, n = 0, len(first)
    while lo < n:
        limit = first[lo] + _CHUNK_SHINGLES
        hi = max(int(np.searchsorted(first, limit, side="right")), lo + 1)
        yield lo, min(hi, n)
        lo = hi


@lru_cache(maxsize=32)
def lsh_params(threshold: float, num_perm: int, recall: float = 0.99) -> tuple[int, int]:
    """(bands, rows): the fewest false candidates while finding `recall` of pairs at threshold.

    A pair of similarity s becomes a candidate with probability 1 - (1 - s^rows)^bands. The
    usual criterion (datasketch's: equal weight to misses and false candidates) finds only
    ~half the pairs right at the threshold; candidates here are confirmed by their signature
    estimate, so a false candidate costs one comparison while a miss keeps a duplicate.
    """
    s = np.linspace(0.0, threshold, 101)
    best, best_cost = (num_perm, 1), float("inf")
    for bands in range(1, num_perm + 1):
        rows = num_perm // bands
        if 1 - (1 - threshold**rows) ** bands < recall:
            continue
        cost = float(np.trapezoid(1 - (1 - s**rows) ** bands, s))
        if cost < best_cost:
            best, best_cost = (bands, rows), cost
    return best


def candidate_pairs(sig: U32, bands: int, rows: int, salt: U64) -> tuple[I64, I64]:
    """Pairs of docs that share a band bucket: each member with the bucket's first and previous.

    `salt` (one value per doc) is mixed into every bucket key, so docs with different salts
    (another task or system prompt) never become candidates. Linking to the first and the
    previous member keeps the pair count linear in bucket size while still chaining a group.
    """
    every = band_keys(sig, bands, rows, salt)
    us: list[I64] = []
    vs: list[I64] = []
    for band in range(bands):
        keys = every[:, band]
        order = np.argsort(keys, kind="stable")
        sorted_keys = keys[order]
        starts = np.ones(len(order), dtype=bool)
        starts[1:] = sorted_keys[1:] != sorted_keys[:-1]
        run_start = np.maximum.accumulate(np.where(starts, np.arange(len(order)), 0))
        members = np.flatnonzero(~starts)
        us += [order[run_start[members]], order[members - 1]]
        vs += [order[members], order[members]]
    if not us:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    u, v = np.concatenate(us), np.concatenate(vs)
    packed = np.unique(np.minimum(u, v) * len(sig) + np.maximum(u, v))
    return packed // len(sig), packed % len(sig)


def band_keys(sig: U32, bands: int, rows: int, salt: U64) -> U64:
    """The LSH bucket key of each doc in each band (docs x bands), `salt` mixed in: the keys
    `candidate_pairs` groups by, and the out-of-core dedupe (curation.groups) groups in SQL."""
    rng = np.random.default_rng(0x5EED)
    mult = rng.integers(1, 2**63, size=rows, dtype=np.uint64) | np.uint64(1)
    out = np.empty((len(sig), bands), dtype=np.uint64)
    for band in range(bands):
        block = sig[:, band * rows : (band + 1) * rows].astype(np.uint64)
        out[:, band] = (block * mult[None, :]).sum(axis=1, dtype=np.uint64) ^ salt
    return out


def similar(
    sig: U32, u: I64, v: I64, threshold: float, chunk: int = 65536
) -> npt.NDArray[np.bool_]:
    """Whether each pair's estimated Jaccard similarity reaches the threshold."""
    out = np.empty(len(u), dtype=bool)
    for lo in range(0, len(u), chunk):
        hi = lo + chunk
        out[lo:hi] = (sig[u[lo:hi]] == sig[v[lo:hi]]).mean(axis=1) >= threshold
    return out
