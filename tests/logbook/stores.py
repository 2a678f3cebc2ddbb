"""Logbooks sealing into a shared store, as replicas do: each its own data_dir."""

from __future__ import annotations

from pathlib import Path

from logbook.segments import open_segments
from logbook.settings import LogbookSettings
from logbook.writer import Logbook
from monitoring.metrics import Metrics
from store import Store, StoreSettings, open_store
from tests.logbook.rows import Row
from tests.services.s3 import ACCESS_KEY, SECRET_KEY, S3Server

BUCKET = "apprentice-replicas"


def bucket_store(s3: S3Server, data_dir: Path) -> Store:
    return open_store(
        StoreSettings(
            url=f"s3://{BUCKET}/prod",
            endpoint_url=s3.endpoint_url,
            access_key_id=ACCESS_KEY,
            secret_access_key=SECRET_KEY,
        ),
        data_dir,
    )


async def open_logbook(data_dir: Path, store: Store, metrics: Metrics | None = None) -> Logbook:
    logbook = Logbook(data_dir, LogbookSettings(), metrics or Metrics(), store)
    await logbook.open(background=False)
    return logbook


async def log_rows(logbook: Logbook, ids: list[str], route: str = "r") -> None:
    for request_id in ids:
        logbook.submit(Row(request_id, route=route))
    assert await logbook.flush()


def sealed_ids(store: Store | Path) -> set[str]:
    con = open_segments(store)
    return {r[0] for r in con.execute("SELECT request_id FROM requests").fetchall()}


async def hot_rows(logbook: Logbook) -> int:
    row = await logbook.run(lambda con: con.execute("SELECT count(*) FROM requests").fetchone())
    return int(row[0]) if row else 0
