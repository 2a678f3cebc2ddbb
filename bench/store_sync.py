"""How fast the object store moves segments: pushes as sealing makes them, pulls as readers do.

Against moto's S3 server on loopback (tests/services/s3.py), so the numbers are the store's own
cost (requests, fsyncs, threads) plus moto's, not a network's. Segments are real Parquet files
of logged rows. Measured, each a median of `--repeat` tries in this one run:
- exclusive push, one file at a time (what each seal does: HEAD, PutObject If-None-Match);
- plain push (pyarrow's upload, what `push_tree` uses);
- cold pull of every segment into an empty mirror (a new replica, or `stats` on a new machine);
- warm pull when nothing changed (every later read: one listing);
- warm pull after one new segment (the steady state of a reader every few seconds);
- a student version (a 32 MB adapter) published with `push_tree` and pulled with `pull_trees`.

    .venv/bin/python bench/store_sync.py [--segments 200] [--rows 1000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from logbook.sealing import segment_path
from store import StoreSettings, open_store
from store.object_store import ObjectStore
from tests.services.s3 import ACCESS_KEY, SECRET_KEY, S3Server

LOGBOOK = "0123456789abcdef"
STUDENT_MB = 32


def segment_table(rows: int, offset: int) -> pa.Table:
    text = "Order {} arrived broken; please refund me, it was a gift for my sister."
    return pa.table(
        {
            "seq": pa.array(range(offset, offset + rows), pa.int64()),
            "request_id": [f"req_{offset + i:012x}" for i in range(rows)],
            "route": ["triage"] * rows,
            "request": [
                f'{{"messages":[{{"role":"user","content":"{text.format(i)}"}}]}}'
                for i in range(rows)
            ],
            "response": ['{"choices":[{"message":{"content":"refund"}}]}'] * rows,
        }
    )


def write_segments(root: Path, count: int, rows: int) -> list[Path]:
    paths = []
    for i in range(count):
        first = i * rows + 1
        path = segment_path(
            root, "requests", "triage", date(2026, 1, 1 + i % 28), first, first + rows - 1, LOGBOOK
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(segment_table(rows, first), path, compression="zstd")
        paths.append(path)
    return paths


def store_at(s3: S3Server, data_dir: Path, bucket: str) -> ObjectStore:
    settings = StoreSettings(
        url=f"s3://{bucket}/bench", endpoint_url=s3.endpoint_url,
        access_key_id=ACCESS_KEY, secret_access_key=SECRET_KEY,
    )  # fmt: skip
    store = open_store(settings, data_dir)
    assert isinstance(store, ObjectStore)
    return store


def median_seconds(repeat: int, run: Callable[[int], object]) -> float:
    times = []
    for i in range(repeat):
        start = time.perf_counter()
        run(i)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--segments", type=int, default=200)
    parser.add_argument("--rows", type=int, default=1000, help="rows per segment")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    n, repeat = args.segments, args.repeat
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        s3 = S3Server(tmp / "moto.log").start()
        try:
            size_mb, results = measure(s3, tmp, n, args.rows, repeat)
        finally:
            s3.stop()
    print(f"\n{n} segments of {args.rows} rows ({size_mb:.1f} MB in all), "
          f"moto on loopback, median of {repeat}:\n")  # fmt: skip
    print("| operation | files | seconds | files/s | MB/s |")
    print("|---|---:|---:|---:|---:|")
    for name, (files, megabytes, seconds) in results.items():
        mbs = f"{megabytes / seconds:.1f}" if megabytes else "-"
        print(f"| {name} | {files} | {seconds:.3f} | {files / seconds:,.0f} | {mbs} |")


def measure(
    s3: S3Server, tmp: Path, n: int, rows: int, repeat: int
) -> tuple[float, dict[str, tuple[int, float, float]]]:
    """(megabytes of segments, {operation: (files, megabytes moved, median seconds)})."""
    out: dict[str, tuple[int, float, float]] = {}
    for i in range(repeat):
        s3.create_bucket(f"push-exclusive-{i}")
        s3.create_bucket(f"push-plain-{i}")
    source = store_at(s3, tmp / "writer", "push-exclusive-0")
    paths = write_segments(source.root, n, rows)
    size_mb = sum(p.stat().st_size for p in paths) / 1e6

    def push_all(bucket: str, exclusive: bool) -> None:
        store = store_at(s3, tmp / "writer", bucket)
        for path in paths:
            store.push(path, exclusive=exclusive)

    out["exclusive push (seal), one by one"] = (n, size_mb, median_seconds(
        repeat, lambda i: push_all(f"push-exclusive-{i}", True)))  # fmt: skip
    out["plain push (pyarrow), one by one"] = (n, size_mb, median_seconds(
        repeat, lambda i: push_all(f"push-plain-{i}", False)))  # fmt: skip
    out["cold pull, empty mirror"] = (
        n,
        size_mb,
        median_seconds(
            repeat, lambda i: store_at(s3, tmp / f"cold-{i}", "push-exclusive-0").pull("segments")
        ),
    )
    reader = store_at(s3, tmp / "cold-0", "push-exclusive-0")
    out["warm pull, nothing new"] = (n, 0.0, median_seconds(
        repeat, lambda i: reader.pull("segments")))  # fmt: skip

    def one_new(i: int) -> None:
        [path] = write_segments(tmp / f"new-{i}", 1, rows)
        rel = path.relative_to(tmp / f"new-{i}")
        target = source.root / rel.parent / rel.name.replace("-000", f"-{i + 1}00", 1)
        target.parent.mkdir(parents=True, exist_ok=True)
        path.rename(target)
        source.push(target, exclusive=True)

    new_times = []
    for i in range(repeat):
        one_new(i)
        start = time.perf_counter()
        report = reader.pull("segments")
        new_times.append(time.perf_counter() - start)
        assert report.fetched == 1, report
    out["warm pull, one new segment"] = (n + 1, 0.0, statistics.median(new_times))

    # A student version: one large adapter file and a small one, as a finished tree.
    def student(i: int) -> Path:
        folder = source.root / "students" / "triage" / str(i + 1)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "adapter_model.safetensors").write_bytes(os.urandom(STUDENT_MB * 1_000_000))
        (folder / "adapter_config.json").write_text("{}")
        return folder

    folders = [student(i) for i in range(repeat)]
    out[f"push_tree, {STUDENT_MB} MB student"] = (2, STUDENT_MB, median_seconds(
        repeat, lambda i: source.push_tree(folders[i], exclusive=True)))  # fmt: skip
    out[f"pull_trees, {STUDENT_MB} MB student, cold"] = (2, STUDENT_MB, median_seconds(
        repeat, lambda i: store_at(s3, tmp / f"tree-{i}", "push-exclusive-0").pull_trees(
            f"students/triage/{i + 1}")))  # fmt: skip
    return size_mb, out


if __name__ == "__main__":
    main()
