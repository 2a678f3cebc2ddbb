"""The object store against a real S3-compatible server (moto) on loopback."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs
import pytest

from store import MARKER, ObjectExists, StoreSettings, StoreUnavailable, open_store
from store.object_store import ObjectStore
from tests.services.s3 import ACCESS_KEY, SECRET_KEY, S3Server


def object_store(s3: S3Server, data_dir: Path, bucket: str = "apprentice-test") -> ObjectStore:
    settings = StoreSettings(
        url=f"s3://{bucket}/shared",
        endpoint_url=s3.endpoint_url,
        access_key_id=ACCESS_KEY,
        secret_access_key=SECRET_KEY,
    )
    store = open_store(settings, data_dir)
    assert isinstance(store, ObjectStore)
    return store


def write(store: ObjectStore, rel: str, data: bytes) -> Path:
    path = store.root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_pushed_files_are_pulled_by_another_mirror_once(s3: S3Server, tmp_path: Path) -> None:
    s3.create_bucket("apprentice-test")
    a, b = object_store(s3, tmp_path / "a"), object_store(s3, tmp_path / "b")
    assert a.root == tmp_path / "a" / "store-mirror"
    for i in range(5):
        a.push(write(a, f"segments/route=r/date=2026-01-01/part-{i}.parquet", b"x" * (i + 1)))
    cold = b.pull("segments")
    assert (cold.listed, cold.fetched, cold.bytes) == (5, 5, 15)
    assert (b.root / "segments/route=r/date=2026-01-01/part-4.parquet").read_bytes() == b"x" * 5
    warm = b.pull("segments")
    assert (warm.listed, warm.fetched) == (5, 0)
    assert b.pull("feedback").listed == 0  # an empty prefix is no error
    assert sorted(p.name for p in b.root.rglob("*") if p.name.startswith(".")) == []


def test_exclusive_push_never_replaces_an_object(s3: S3Server, tmp_path: Path) -> None:
    s3.create_bucket("apprentice-test")
    a, b = object_store(s3, tmp_path / "a"), object_store(s3, tmp_path / "b")
    rel = "segments/route=r/date=2026-01-01/part-1.parquet"
    assert a.push(write(a, rel, b"first"), exclusive=True) is True
    assert a.push(a.root / rel, exclusive=True) is False  # our own earlier push: done
    with pytest.raises(ObjectExists, match="exists already with other bytes"):
        b.push(write(b, rel, b"other bytes"), exclusive=True)
    body = s3.client().get_object(Bucket="apprentice-test", Key=f"shared/{rel}")["Body"].read()
    assert body == b"first"


def test_the_conditional_put_alone_refuses_an_existing_key(s3: S3Server, tmp_path: Path) -> None:
    # A writer that raced past the HEAD: the server's If-None-Match is what stops it.
    s3.create_bucket("apprentice-test")
    store = object_store(s3, tmp_path)
    rel = "segments/route=r/date=2026-01-01/part-1.parquet"
    s3.client().put_object(Bucket="apprentice-test", Key=f"shared/{rel}", Body=b"theirs")
    real_head, heads = store._head, []

    def head_misses_once(key: str) -> dict[str, Any] | None:
        heads.append(key)
        return None if len(heads) == 1 else real_head(key)

    store._head = head_misses_once  # type: ignore[method-assign]
    with pytest.raises(ObjectExists, match="exists already with other bytes"):
        store.push(write(store, rel, b"ours"), exclusive=True)
    assert len(heads) == 2  # the put was refused (412), then the object was looked at
    body = s3.client().get_object(Bucket="apprentice-test", Key=f"shared/{rel}")["Body"].read()
    assert body == b"theirs"


class FailingStream:
    """Gives part of an object, then fails like a connection reset."""

    def __init__(self) -> None:
        self.calls = 0

    def __enter__(self) -> FailingStream:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def read(self, n: int) -> bytes:
        self.calls += 1
        if self.calls > 1:
            raise OSError("AWS Error NETWORK_CONNECTION during GetObject: connection reset")
        return b"half of it"


class HalfReads:
    def __init__(self, real: pafs.S3FileSystem) -> None:
        self.real = real

    def get_file_info(self, selector: Any) -> Any:
        return self.real.get_file_info(selector)

    def open_input_stream(self, path: str) -> FailingStream:
        return FailingStream()


def test_a_pull_cut_short_leaves_no_partial_file(s3: S3Server, tmp_path: Path) -> None:
    s3.create_bucket("apprentice-test")
    a, b = object_store(s3, tmp_path / "a"), object_store(s3, tmp_path / "b")
    rel = "segments/route=r/date=2026-01-01/part-1.parquet"
    a.push(write(a, rel, b"0123456789" * 1000))
    b._fs = HalfReads(b._fs)  # type: ignore[assignment]
    with pytest.raises(StoreUnavailable, match="connection reset"):
        b.pull("segments")
    assert [p for p in b.root.rglob("*") if p.is_file()] == []  # neither the file nor a temp
    b._fs = b._fs.real  # type: ignore[attr-defined]
    assert b.pull("segments").fetched == 1
    assert (b.root / rel).stat().st_size == 10_000


def test_trees_are_pulled_whole_and_only_when_finished(s3: S3Server, tmp_path: Path) -> None:
    s3.create_bucket("apprentice-test")
    a, b = object_store(s3, tmp_path / "a"), object_store(s3, tmp_path / "b")
    done = a.root / "students/r/1"
    write(a, "students/r/1/adapter.bin", b"w" * 100)
    write(a, "students/r/1/tokenizer/vocab.json", b"{}")
    a.push_tree(done)
    assert a.is_complete(done)
    # A second version whose files are up but whose marker is not: a writer still at work.
    a.push(write(a, "students/r/2/adapter.bin", b"half"))
    report = b.pull_trees("students/r")
    assert report.fetched == 3 and b.is_complete(b.root / "students/r/1")
    assert (b.root / "students/r/1/tokenizer/vocab.json").read_bytes() == b"{}"
    assert not (b.root / "students/r/2").exists()
    assert b.pull_trees("students/r").fetched == 0
    with pytest.raises(ObjectExists, match="published already"):
        a.push_tree(done, exclusive=True)
    keys = [o["Key"] for o in s3.client().list_objects_v2(Bucket="apprentice-test")["Contents"]]
    assert f"shared/students/r/1/{MARKER}" in keys


def test_staging_marks_survive_and_clear(s3: S3Server, tmp_path: Path) -> None:
    store = object_store(s3, tmp_path)
    path = store.root / "segments/route=r/date=2026-01-01/part-1.parquet"
    store.stage(path)
    assert store.staged("segments") == [path]  # marked before the file is linked
    path.write_bytes(b"x")
    s3.create_bucket("apprentice-test")
    report = store.push_staged([path])
    assert report.pushed == 1 and report.failed == ()
    assert store.staged("segments") == []


def test_an_unreachable_store_fails_with_its_url_and_no_credential(
    s3: S3Server, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    s3.create_bucket("apprentice-test")
    store = object_store(s3, tmp_path)
    path = write(store, "segments/route=r/date=2026-01-01/part-1.parquet", b"x")
    assert store.push(path, exclusive=True)
    store.pull("segments")
    s3.stop()
    errors = []
    for call in (lambda: store.pull("segments"), lambda: store.push(path, exclusive=True)):
        with pytest.raises(StoreUnavailable) as failed:
            call()
        errors.append(str(failed.value))
    report = store.push_staged([path])
    assert report.failed and report.pushed == 0
    for message in errors:
        assert message.startswith(f"The store s3://apprentice-test/shared at {s3.endpoint_url}")
    everything = " ".join(errors) + caplog.text + repr(store) + store.describe()
    assert ACCESS_KEY not in everything and SECRET_KEY not in everything
    assert caplog.records  # botocore and urllib3 did log (at INFO and up)
