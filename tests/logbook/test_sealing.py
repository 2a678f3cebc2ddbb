"""Sealing into a shared store: replicas (one data_dir each) write one store, never each other's
files, and every replica's rows are read through any of them."""

from __future__ import annotations

from pathlib import Path

from logbook.segments import segment_files
from store import Store
from tests.logbook.stores import bucket_store, log_rows, open_logbook, sealed_ids
from tests.services.s3 import S3Server


async def test_two_logbooks_seal_into_one_directory(tmp_path: Path) -> None:
    shared = Store(tmp_path / "shared")
    a = await open_logbook(tmp_path / "a", shared)
    b = await open_logbook(tmp_path / "b", shared)
    await log_rows(a, [f"a-{i}" for i in range(20)])
    await log_rows(b, [f"b-{i}" for i in range(30)])  # the same seq numbers, 1 to 20, again
    await a.seal()
    await b.seal()
    await a.close()
    await b.close()
    files = segment_files(shared)
    assert len({f.name for f in files}) == len(files) == 2
    assert {f.name[5:17] for f in files} == {a.identity[:12], b.identity[:12]}
    expected = {f"a-{i}" for i in range(20)} | {f"b-{i}" for i in range(30)}
    assert sealed_ids(shared) == expected
    # The hot data stays in each replica's own data_dir; no segment lands there.
    assert (tmp_path / "a" / "apprentice.duckdb").exists()
    assert not (tmp_path / "a" / "segments").exists()


async def test_opening_a_logbook_leaves_other_replicas_unfinished_files(tmp_path: Path) -> None:
    shared = Store(tmp_path / "shared")
    a = await open_logbook(tmp_path / "a", shared)
    await log_rows(a, ["a-0"])
    await a.seal()
    folder = segment_files(shared)[0].parent
    theirs = folder / ".part-0123456789ab-000000000001-000000000009.tmp"
    theirs.write_bytes(b"another replica, writing")
    ours = folder / f".part-{a.identity[:12]}-000000000002-000000000002.tmp"
    ours.write_bytes(b"our write, cut short")
    await a.close()
    again = await open_logbook(tmp_path / "a", shared)
    assert theirs.exists() and not ours.exists()
    b = await open_logbook(tmp_path / "b", shared)  # sees a's sealed file: not its own
    assert sealed_ids(shared) == {"a-0"}
    await again.close()
    await b.close()


async def test_two_logbooks_seal_into_one_bucket(s3: S3Server, tmp_path: Path) -> None:
    s3.create_bucket("apprentice-replicas")
    store_a, store_b = bucket_store(s3, tmp_path / "a"), bucket_store(s3, tmp_path / "b")
    a = await open_logbook(tmp_path / "a", store_a)
    b = await open_logbook(tmp_path / "b", store_b)
    await log_rows(a, [f"a-{i}" for i in range(10)])
    await log_rows(b, [f"b-{i}" for i in range(10)])
    await a.seal()
    await b.seal()
    expected = {f"a-{i}" for i in range(10)} | {f"b-{i}" for i in range(10)}
    assert sealed_ids(store_a) == sealed_ids(store_b) == expected  # each pulls the other's
    keys = sorted(
        o["Key"] for o in s3.client().list_objects_v2(Bucket="apprentice-replicas")["Contents"]
    )
    assert len(keys) == 2 and all(k.startswith("prod/segments/route=r/date=") for k in keys)
    assert {k.rsplit("/", 1)[1][5:17] for k in keys} == {a.identity[:12], b.identity[:12]}
    await a.close()
    await b.close()
