"""Stage 5, dedupe: one pair per group of exact or near-duplicate prompts.

Exact duplicates share the hash of the normalised prompt (all messages including the system
prompt, tools and response format; lowercased, whitespace collapsed). Near duplicates are
found among the distinct prompts with MinHash over word shingles of the non-system messages
and LSH banding tuned to `dedupe_threshold`; candidates are confirmed by their estimated
Jaccard similarity, and groups are the connected components of confirmed pairs. Prompts of
different tasks or system prompts are never grouped.

The kept member of a group is the best: corrected, then best rated, then newest. The group id
is derived from the group's oldest member, so it stays the same as newer copies arrive.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from curation.graph import connected_components
from curation.minhash import candidate_pairs, lsh_params, signatures, similar
from curation.pairs import Pair, prompt_text
from curation.report import StageReport
from curation.settings import CurationSettings


def exact_key(pair: Pair) -> str:
    """Hash of the normalised prompt: equal keys mean the student sees the same input."""
    text = " ".join(prompt_text(pair.messages, include_system=True).lower().split())
    if pair.tools is None and pair.response_format is None:
        extra = _plain_extra(pair.task)  # most rows: json.dumps is a third of this function
    else:
        extra = json.dumps(
            [pair.task, pair.tools, pair.response_format], sort_keys=True, default=str
        )
    return hashlib.blake2b(f"{text}\x00{extra}".encode(), digest_size=12).hexdigest()


@lru_cache(maxsize=4096)
def _plain_extra(task: str | None) -> str:
    return json.dumps([task, None, None], sort_keys=True, default=str)


def stable_id(text: str | None) -> np.uint64:
    """A 64-bit hash of a string that is the same in every process."""
    digest = hashlib.blake2b((text or "").encode(), digest_size=8).digest()
    return np.uint64(int.from_bytes(digest, "little"))


def near_duplicate_groups(
    texts: Sequence[str], salts: Sequence[str], settings: CurationSettings
) -> np.ndarray:
    """Component label (smallest member index) of each text among near-duplicate prompts."""
    sig = signatures(texts, settings.shingle_size, settings.num_perm, settings.seed)
    salt = np.array([stable_id(s) for s in salts], dtype=np.uint64)
    bands, rows = lsh_params(settings.dedupe_threshold, settings.num_perm)
    u, v = candidate_pairs(sig, bands, rows, salt)
    keep = similar(sig, u, v, settings.dedupe_threshold)
    return connected_components(len(texts), u[keep], v[keep])


def dedupe_pairs(pairs: list[Pair], settings: CurationSettings) -> tuple[list[Pair], StageReport]:
    """Keep the best pair of each exact or near-duplicate group; record group ids and members."""
    if not pairs:
        return pairs, StageReport.of("dedupe", 0, 0, Counter(), Counter())
    keys = [exact_key(p) for p in pairs]
    first_of: dict[str, int] = {}
    for i, key in enumerate(keys):
        first_of.setdefault(key, i)
    reps = list(first_of.values())
    labels = near_duplicate_groups(
        [prompt_text(pairs[i].messages) for i in reps],
        [f"{pairs[i].task}\x00{pairs[i].prompt_fingerprint}" for i in reps],
        settings,
    )
    rep_index = {rep: j for j, rep in enumerate(reps)}
    groups: dict[int, list[int]] = {}
    for i, key in enumerate(keys):
        groups.setdefault(int(labels[rep_index[first_of[key]]]), []).append(i)
    dropped: Counter[str] = Counter()
    kept: list[Pair] = []
    for members in groups.values():
        best = max(members, key=lambda i: _preference(pairs[i]))
        oldest = min(members, key=lambda i: (pairs[i].started_at, pairs[i].request_id))
        pair = pairs[best]
        pair.group_id = hashlib.blake2b(
            pairs[oldest].request_id.encode(), digest_size=8
        ).hexdigest()
        pair.group_members = [pairs[i].request_id for i in members]
        for i in members:
            if i != best:
                dropped["exact_duplicate" if keys[i] == keys[best] else "near_duplicate"] += 1
        kept.append(pair)
    kept.sort(key=lambda p: (p.started_at, p.request_id))
    return kept, StageReport.of("dedupe", len(pairs), len(kept), dropped, Counter())


def _preference(pair: Pair) -> tuple[bool, float, object, str]:
    score = pair.feedback_score if pair.feedback_score is not None else 0.0
    return (pair.corrected, score, pair.started_at, pair.request_id)
