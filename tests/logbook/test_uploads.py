"""Sealed segments reach the object store: pushed after the seal, retried until they are there,
and never lost on the way (the store down, the process restarted)."""

from __future__ import annotations

from pathlib import Path

import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from logbook.segments import segment_files
from monitoring.metrics import Metrics
from store.object_store import ObjectStore
from tests.logbook.stores import BUCKET, bucket_store, hot_rows, log_rows, open_logbook, sealed_ids
from tests.services.s3 import ACCESS_KEY, SECRET_KEY, S3Server


def bucket_keys(s3: S3Server, under: str = "prod/segments/") -> list[str]:
    listing = s3.client().list_objects_v2(Bucket=BUCKET, Prefix=under)
    return sorted(o["Key"] for o in listing.get("Contents", []))


async def test_a_sealed_segment_is_parquet_any_engine_reads_from_the_bucket(
    s3: S3Server, tmp_path: Path
) -> None:
    s3.create_bucket(BUCKET)
    logbook = await open_logbook(tmp_path, bucket_store(s3, tmp_path))
    await log_rows(logbook, [f"id-{i}" for i in range(25)])
    [segment] = await logbook.seal()
    await logbook.close()
    # A reader that knows nothing of apprentice: pyarrow straight from the bucket.
    s3fs = pafs.S3FileSystem(
        access_key=ACCESS_KEY, secret_key=SECRET_KEY, region="us-east-1",
        endpoint_override=f"127.0.0.1:{s3.port}", scheme="http",
    )  # fmt: skip
    [key] = bucket_keys(s3)
    assert key.endswith(segment.path.name)
    table = pq.read_table(f"{BUCKET}/{key}", filesystem=s3fs)
    assert sorted(table.column("request_id").to_pylist()) == sorted(f"id-{i}" for i in range(25))


async def test_a_push_failure_loses_nothing_and_the_segment_arrives_later(
    s3: S3Server, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    s3.create_bucket(BUCKET)
    store, metrics = bucket_store(s3, tmp_path), Metrics()
    assert isinstance(store, ObjectStore)
    logbook = await open_logbook(tmp_path, store, metrics)
    s3.stop()  # the store goes away
    await log_rows(logbook, [f"id-{i}" for i in range(40)])
    [segment] = await logbook.seal()
    assert await hot_rows(logbook) == 0  # sealed: out of the hot table, into the mirror
    assert metrics.store_push_failures._value.get() == 1
    assert metrics.store_unpushed._value.get() == 1
    assert store.staged("segments") == [segment.path]
    assert len(sealed_ids(store.root)) == 40  # on this disk, readable locally meanwhile
    await logbook.seal()  # still down: tried again, still waiting
    assert metrics.store_push_failures._value.get() == 2
    waiting = [r for r in caplog.records if "wait in" in r.getMessage()]
    assert len(waiting) == 1 and waiting[0].levelname == "ERROR"  # once per outage
    await logbook.close()  # a restart while the store is down

    s3.restart()  # moto comes back empty: the bucket again, none of the objects
    s3.create_bucket(BUCKET)
    again_metrics = Metrics()
    again = await open_logbook(tmp_path, bucket_store(s3, tmp_path), again_metrics)
    assert again_metrics.store_unpushed._value.get() == 1  # found by its mark
    await log_rows(again, [f"later-{i}" for i in range(5)])
    await again.seal()
    assert again_metrics.store_unpushed._value.get() == 0
    assert len(bucket_keys(s3)) == 2 and store.staged("segments") == []
    await again.close()
    other = bucket_store(s3, tmp_path / "elsewhere")  # a fresh replica sees every row
    assert sealed_ids(other) == {f"id-{i}" for i in range(40)} | {f"later-{i}" for i in range(5)}


async def test_a_mark_whose_file_was_never_linked_is_dropped_at_open(
    s3: S3Server, tmp_path: Path
) -> None:
    store = bucket_store(s3, tmp_path)
    logbook = await open_logbook(tmp_path, store)
    await log_rows(logbook, ["kept-hot"])
    await logbook.close()
    # A crash between staging and the link: the mark is there, the file is not.
    first = segment_files(store.root)[0]
    ghost = first.with_name(f"part-{logbook.identity[:12]}-000000000099-000000000099.parquet")
    store.stage(ghost)
    theirs = first.with_name("part-0123456789ab-000000000001-000000000001.parquet")
    store.stage(theirs)  # another logbook's mark in a shared mirror: not ours to drop
    reopened = await open_logbook(tmp_path, store)
    assert ghost not in store.staged("segments") and theirs in store.staged("segments")
    assert reopened.uploads.pending == [first]  # the real one still waits for its push
    await reopened.close()
