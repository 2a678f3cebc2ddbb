"""The spill folder: rows the writer could not commit, kept as JSON lines until the next start.

A spill file is written under a hidden temporary name, fsynced, then renamed, so a crash leaves
either a whole file or none; at start every file is replayed (inserted) and then deleted.
Rows that still cannot be inserted are kept in ``spill/rejected/`` and logged, never dropped.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from logbook.schema import ROW_TYPES, Row, row_from_dict

log = logging.getLogger("apprentice.logbook")


def write_spill(folder: Path, table: str, rows: list[Row]) -> None:
    """One durable spill file holding `rows` of `table`."""
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{table}-{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}.jsonl"
    tmp = folder / f".{name}.tmp"
    with tmp.open("wb") as f:
        for row in rows:
            f.write(orjson.dumps(row) + b"\n")
        f.flush()
        os.fsync(f.fileno())
    tmp.rename(folder / name)


def spill_files(folder: Path) -> Iterator[tuple[str, Path]]:
    """(table, path) of every finished spill file, oldest first."""
    if not folder.exists():
        return
    for path in sorted(folder.glob("*.jsonl")):
        table = path.name.split("-", 1)[0]
        if table not in ROW_TYPES:
            log.warning("spill: ignoring unknown file %s", path)
            continue
        yield table, path


def replay_file(
    table: str, path: Path, insert: Callable[[str, list[Row]], None]
) -> tuple[int, int]:
    """Insert a spill file's rows, one by one where the batch fails; delete the file.

    Returns (replayed, rejected). Rejected rows are kept in ``rejected/`` beside the file."""
    rows: list[Row] = []
    unreadable: list[bytes] = []
    for line in path.read_bytes().splitlines():
        try:
            rows.append(row_from_dict(table, orjson.loads(line)))
        except (orjson.JSONDecodeError, TypeError, ValueError):
            unreadable.append(line)
    try:
        insert(table, rows)
        rejected: list[bytes] = []
    except Exception:  # a bad row must not hold back the good ones, nor be dropped
        rejected = _insert_one_by_one(table, rows, insert)
    if kept_lines := unreadable + rejected:
        kept = path.parent / "rejected" / path.name
        kept.parent.mkdir(exist_ok=True)
        kept.write_bytes(b"".join(line + b"\n" for line in kept_lines))
        log.error("spill: %d rows cannot be written; kept in %s", len(kept_lines), kept)
    path.unlink()
    return len(rows) - len(rejected), len(kept_lines)


def _insert_one_by_one(
    table: str, rows: list[Row], insert: Callable[[str, list[Row]], None]
) -> list[bytes]:
    rejected: list[bytes] = []
    for row in rows:
        try:
            insert(table, [row])
        except Exception:
            rejected.append(orjson.dumps(row, default=_text))
    return rejected


def _text(value: Any) -> str:
    return repr(value)
