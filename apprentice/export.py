"""`apprentice export`: logged pairs in OpenAI's fine-tuning format (one JSON object a line)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from curation.pairs import MalformedRow, parse_pair
from logbook.segments import Skipped, open_segments
from logbook.surfaces import PAIR_ENDPOINTS
from store.store import Store


def logged_pairs(
    store: Store, route: str, skipped: list[Skipped] | None = None
) -> Iterator[dict[str, Any]]:
    """Successful, complete teacher answers of a route as fine-tuning examples, oldest first,
    from every replica's segments; unreadable segment files are left out and listed in
    `skipped`. Every pair surface is exported (chat, the Responses API, Anthropic Messages,
    legacy completions), each read in chat form as curation reads it."""
    con = open_segments(store, route, skipped)
    endpoints = ", ".join(f"'{e}'" for e in sorted(PAIR_ENDPOINTS))
    result = con.execute(
        "SELECT endpoint, request, response FROM requests WHERE route = ? AND outcome = 'ok' "
        "AND status = 200 AND NOT truncated AND served_by = 'teacher' "
        f"AND (endpoint IS NULL OR endpoint IN ({endpoints})) ORDER BY seq",
        [route],
    )
    while batch := result.fetchmany(1000):
        for endpoint, request_text, response_text in batch:
            example = finetune_example(request_text, response_text, endpoint)
            if example is not None:
                yield example


def finetune_example(
    request_text: str, response_text: str | None, endpoint: str | None = None
) -> dict[str, Any] | None:
    """One `{"messages": [...], "tools": [...]}` line, or None when the row has no answer."""
    if not response_text:
        return None
    try:
        messages, tools, _, message = parse_pair(endpoint, request_text, response_text)
    except MalformedRow:
        return None
    if message is None:
        return None
    answer: dict[str, Any] = {"role": "assistant"}
    if message.get("content") is not None:
        answer["content"] = message["content"]
    if message.get("tool_calls"):
        answer["tool_calls"] = message["tool_calls"]
    if len(answer) == 1:
        return None
    example: dict[str, Any] = {"messages": [*messages, answer]}
    if tools:
        example["tools"] = tools
    return example


def write_jsonl(examples: Iterator[dict[str, Any]], out: Path | None) -> int:
    """Write examples to `out` (stdout when None); return how many."""
    import sys

    count = 0
    stream = out.open("wb") if out else sys.stdout.buffer
    try:
        for example in examples:
            stream.write(orjson.dumps(example) + b"\n")
            count += 1
    finally:
        if out:
            stream.close()
        else:
            stream.flush()
    return count


def dataset_pairs(
    data_dir: Path, route: str, version: int, split: str = "train"
) -> Iterator[dict[str, Any]]:
    """A curated dataset version's split as fine-tuning examples."""
    import pyarrow.parquet as pq

    from curation.dataset import dataset_dir

    path = dataset_dir(data_dir, route, version) / f"{split}.parquet"
    if not path.parent.exists():
        raise FileNotFoundError(
            f"Route {route} has no dataset v{version}; `apprentice curate --route {route}` "
            "writes the next one."
        )
    if not path.exists():
        raise FileNotFoundError(f"Dataset v{version} of route {route} has no {split} split.")
    table = pq.read_table(path, columns=["messages", "tools", "answer"])
    for row in table.to_pylist():
        example: dict[str, Any] = {
            "messages": [*orjson.loads(row["messages"]), orjson.loads(row["answer"])]
        }
        if row["tools"]:
            example["tools"] = orjson.loads(row["tools"])
        yield example
