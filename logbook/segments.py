"""Readers of sealed segments: what every process but the server uses to see the log.

`open_segments(data_dir)` returns an in-memory DuckDB connection with two views, `requests`
and `feedback`, over the Parquet segments (empty views with the right columns when nothing is
sealed yet). Any other engine can read the same files.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from logbook.schema import TABLE_COLUMNS
from logbook.sealing import SEGMENT_DIRS


def segment_files(data_dir: Path, table: str = "requests", route: str | None = None) -> list[Path]:
    """Sealed segment files of a table, optionally of one route, in seal order."""
    root = data_dir / SEGMENT_DIRS[table]
    pattern = f"route={route}/date=*/part-*.parquet" if route else "route=*/date=*/part-*.parquet"
    return sorted(root.glob(pattern), key=lambda p: p.name) if root.exists() else []


def open_segments(data_dir: Path, route: str | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory connection with `requests` and `feedback` views over sealed segments."""
    con = duckdb.connect(":memory:")
    for table in TABLE_COLUMNS:
        files = segment_files(data_dir, table, route)
        if files:
            listing = ", ".join(_quote(str(p)) for p in files)
            con.execute(
                f"CREATE VIEW {table} AS SELECT * FROM read_parquet([{listing}], "
                "hive_partitioning = false, union_by_name = true)"
            )
        else:
            cols = ", ".join(
                ["CAST(NULL AS BIGINT) AS seq"]
                + [f"CAST(NULL AS {c.sql.split()[0]}) AS {c.name}" for c in TABLE_COLUMNS[table]]
            )
            con.execute(f"CREATE VIEW {table} AS SELECT {cols} WHERE false")
    return con


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
