"""Stage 7, split: train and eval with nothing leaking across, and eval that stays eval.

Rows are joined into units: rows that share a session, or a near-duplicate group, are one
unit, and a unit goes to one side whole. Each unit's position is a stable hash (the smallest
hash of its sessions and group ids; group ids come from the group's oldest member, so they do
not move between versions). Eval takes, in this order, every unit that holds a row, session
or group that was in eval in an earlier version, then units by ascending hash until it holds
at least `eval_share` of the rows and `eval_min_rows` (never more than half of them). A fixed
hash order means the same units are picked again next time, as far as sizes allow.

Rows of the novel slice (`curation.novel`) go to eval whatever their unit; the rest are split
as above, the in-distribution share counted on them alone. A novel row's session-mates may
stay in train: none of them names a held-out span (a row that does is novel itself), and
dragging whole sessions along cost train a sixth of its rows (the demo's traffic, 2,843 rows:
2,026 train rows against 2,386 this way; 2,558 without a novel slice).
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from dataclasses import dataclass

import numpy as np

from curation.graph import connected_components
from curation.pairs import Pair
from curation.report import StageReport
from curation.settings import CurationSettings


@dataclass(frozen=True)
class PriorEval:
    """What earlier versions of the route's dataset held in eval."""

    request_ids: frozenset[str] = frozenset()
    sessions: frozenset[str] = frozenset()
    groups: frozenset[str] = frozenset()
    novel_keys: frozenset[str] = frozenset()  # span groups held out of train (curation.novel)


def split_pairs(
    pairs: list[Pair],
    settings: CurationSettings,
    prior: PriorEval = PriorEval(),
    novel: frozenset[str] | set[str] = frozenset(),
) -> tuple[list[Pair], list[Pair], StageReport]:
    """(train, eval, report): split by unit so no session or prompt family crosses sides;
    `novel` request ids go to eval whatever their unit (see the module docstring)."""
    held = [p for p in pairs if p.request_id in novel]
    rest = [p for p in pairs if p.request_id not in novel]
    unit = _units(rest)
    unit_rows: dict[int, list[int]] = {}
    for i, u in enumerate(unit):
        unit_rows.setdefault(int(u), []).append(i)
    forced = {u for u, rows in unit_rows.items() if any(_was_eval(rest[i], prior) for i in rows)}
    n = len(rest)
    target = min(max(math.ceil(settings.eval_share * n), settings.eval_min_rows), n // 2)
    chosen = set(forced)
    size = sum(len(unit_rows[u]) for u in chosen)
    order = sorted(unit_rows, key=lambda u: min(_unit_key(rest[i]) for i in unit_rows[u]))
    for u in order:
        if size >= target:
            break
        if u not in chosen:
            chosen.add(u)
            size += len(unit_rows[u])
    eval_rows = {i for u in chosen for i in unit_rows[u]}
    train = [p for i, p in enumerate(rest) if i not in eval_rows]
    evaluation = held + [p for i, p in enumerate(rest) if i in eval_rows]
    changed = Counter(
        {
            "train": len(train),
            "eval": len(evaluation),
            "kept_in_eval": sum(len(unit_rows[u]) for u in forced),
        }
    )
    return train, evaluation, StageReport.of("split", len(pairs), len(pairs), Counter(), +changed)


def _units(pairs: list[Pair]) -> np.ndarray:
    """Component label of each pair in the graph linking rows of one session or group."""
    first: dict[str, int] = {}
    u: list[int] = []
    v: list[int] = []
    for i, pair in enumerate(pairs):
        for key in (f"s:{pair.session_hash}" if pair.session_hash else None, f"g:{pair.group_id}"):
            if key is None:
                continue
            j = first.setdefault(key, i)
            if j != i:
                u.append(j)
                v.append(i)
    return connected_components(
        len(pairs), np.array(u, dtype=np.int64), np.array(v, dtype=np.int64)
    )


def _unit_key(pair: Pair) -> str:
    keys = [pair.group_id or pair.request_id] + ([pair.session_hash] if pair.session_hash else [])
    return min(hashlib.blake2b(k.encode(), digest_size=8).hexdigest() for k in keys)


def _was_eval(pair: Pair, prior: PriorEval) -> bool:
    if pair.session_hash and pair.session_hash in prior.sessions:
        return True
    if pair.group_id and pair.group_id in prior.groups:
        return True
    return any(rid in prior.request_ids for rid in pair.group_members or [pair.request_id])
