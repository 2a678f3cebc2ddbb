"""Curation of a million logged rows stays in bounded memory (its peak RSS, in a child process).

The in-memory pipeline held ~8 KB per logged row (822 MB at 100,000 rows), so it would need
several GB here; the out-of-core plan holds a batch, the kept rows and DuckDB's memory limit.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from logbook.schema import ROW_SCHEMA_VERSION, arrow_schema
from logbook.sealing import segment_path

ROWS = 1_000_000
SEGMENT_ROWS = 100_000
PEAK_MB = 1000  # measured 642 MB; the in-memory job would need ~8 GB
T0 = datetime(2026, 1, 1)
CHILD = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from curation.job import run_curation
    from curation.scan import Resources
    from curation.settings import CurationSettings

    result = run_curation(
        Path(sys.argv[1]), "big", CurationSettings(max_rows=2000),
        resources=Resources(memory_limit="256MB", incremental=False),
    )
    peak = [l for l in Path("/proc/self/status").read_text().splitlines() if l.startswith("VmHWM")]
    print(json.dumps({"peak_kb": int(peak[0].split()[1]), "counts": result.counts,
                      "stages": [s.to_json() for s in result.stages]}))
    """
)


def _segment(start: int, n: int, rng: np.random.Generator) -> pa.Table:
    """`n` logged rows of short prompts (six words of 400), built column-wise in Arrow."""
    vocab = pa.array([f"word{chr(97 + i % 26)}{chr(97 + i // 26)}" for i in range(400)])
    words = [vocab.take(pa.array(rng.integers(0, 400, n))) for _ in range(6)]
    prompt = pc.binary_join_element_wise(*words, " ")
    request = pc.binary_join_element_wise(
        '{"model": "m", "messages": [{"role": "user", "content": "', prompt, '"}]}', ""
    )
    response = '{"choices": [{"message": {"role": "assistant", "content": "fine"}}]}'
    schema = pa.schema([pa.field("seq", pa.int64()), *arrow_schema("requests")])
    values = {
        "seq": pa.array(np.arange(start + 1, start + n + 1)),
        "request_id": pa.array([f"req-{i}" for i in range(start, start + n)]),
        "schema_version": pa.array([ROW_SCHEMA_VERSION] * n, pa.int32()),
        "started_at": pa.array(
            np.datetime64(T0) + np.arange(start, start + n) * 10**6, pa.timestamp("us")
        ),
        "route": pa.array(["big"] * n),
        "served_by": pa.array(["teacher"] * n),
        "teacher": pa.array(["t"] * n),
        "request": request,
        "response": pa.array([response] * n),
        "status": pa.array([200] * n, pa.int32()),
        "outcome": pa.array(["ok"] * n),
        "truncated": pa.array([False] * n),
    }
    columns = [values.get(f.name, pa.nulls(n, f.type)) for f in schema]
    return pa.Table.from_arrays(
        [c.cast(f.type) for c, f in zip(columns, schema, strict=True)], schema=schema
    )


@pytest.mark.slow
@pytest.mark.timeout(900)  # ~100 s alone; far more on a machine other jobs share
def test_a_million_rows_are_curated_in_bounded_memory(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for start in range(0, ROWS, SEGMENT_ROWS):
        path = segment_path(
            tmp_path, "requests", "big", T0.date(), start + 1, start + SEGMENT_ROWS, "0" * 32
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(_segment(start, SEGMENT_ROWS, rng), path)
    child = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path)], capture_output=True, text=True, check=True
    )
    report = json.loads(child.stdout.strip().splitlines()[-1])
    print(f"curation of {ROWS:,} rows: peak RSS {report['peak_kb'] / 1024:,.0f} MB")
    stages = {s["name"]: s for s in report["stages"]}
    assert stages["select"]["rows_in"] == ROWS and stages["quality"]["rows_out"] == ROWS
    assert stages["dedupe"]["rows_out"] > 0.9 * ROWS  # random prompts: few duplicates
    assert report["counts"]["train"] + report["counts"]["eval"] <= 2000
    assert report["peak_kb"] / 1024 < PEAK_MB, report["peak_kb"]
