"""One DuckDB transaction: committed whole, or rolled back without hiding why it failed."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import duckdb


@contextlib.contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """BEGIN, then COMMIT when the block succeeds, else ROLLBACK and re-raise."""
    con.execute("BEGIN TRANSACTION")
    try:
        yield con
        con.execute("COMMIT")
    except BaseException:
        # A failed COMMIT (a full disk) has already ended the transaction: a ROLLBACK would
        # raise "no transaction is active" and hide the error that matters.
        with contextlib.suppress(duckdb.Error):
            con.execute("ROLLBACK")
        raise
