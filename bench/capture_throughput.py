"""Rows a second capture sustains, from finished exchanges to committed rows, none lost.

Real `Exchange` objects (a non-streaming answer, or a streamed one in 12 pieces) are turned into
rows by the proxy's `build_row` (parsing, stream reassembly, tokens, cost: what `finish` does
once an answer is complete) and handed to the real `Logbook` on a DuckDB file, which inserts
Arrow batches every flush interval. The clock runs from the first row built to the last
commit; then everything is sealed and counted in the Parquet segments. The build cost per row
is reported on its own: it is what the event loop spends per request.

    .venv/bin/python bench/capture_throughput.py [--rows 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from logbook.segments import open_segments
from logbook.settings import LogbookSettings
from logbook.writer import Logbook
from monitoring.metrics import Metrics
from proxy.accounting import Pricer
from proxy.exchange import Exchange, build_row, now_utc
from proxy.settings import RouteSettings
from tests.fakes.teacher import FakeTeacher

ROUTE = RouteSettings(
    name="triage", teacher="openai/fake", input_cost_per_mtok=0.15, output_cost_per_mtok=0.6
)


def exchanges(n: int) -> list[Exchange]:
    fake = FakeTeacher()
    out = []
    for i in range(n):
        stream = i % 4 == 0
        payload = {
            "model": "triage",
            "stream": stream,
            "messages": [
                {"role": "system", "content": "Classify the support message as JSON."},
                {"role": "user", "content": f"Order {i} arrived broken, refund please {i % 97}"},
            ],
        }
        exchange = Exchange(
            request_id=f"req_{i:012x}", route=ROUTE, started_at=now_utc(), payload=payload,
            request_body=orjson.dumps(payload), stream=stream, status=200,
            latency_s=0.01, ttft_s=0.005,
        )  # fmt: skip
        if stream:
            data = b"".join(b"data: " + orjson.dumps(c) + b"\n\n" for c in fake.chunks(payload))
            exchange.chunks = [
                data[j : j + len(data) // 12 + 1] for j in range(0, len(data), len(data) // 12 + 1)
            ]
        else:
            exchange.response_body = orjson.dumps(fake.completion(payload))
        out.append(exchange)
    return out


async def run(n: int, batch_every: int, fsync: bool = False) -> dict[str, float]:
    with tempfile.TemporaryDirectory(dir=Path(__file__).parent) as tmp:  # a real disk, not /tmp
        metrics = Metrics()
        # 100 ms, as the README's table was measured (the default is 1000 now): the clock
        # stops at the last commit, which a longer interval would only delay.
        settings = LogbookSettings(queue_size=n + 1, fsync=fsync, flush_interval_ms=100)
        logbook = Logbook(Path(tmp), settings, metrics)
        await logbook.open()
        items = exchanges(n)
        pricer = Pricer.load([ROUTE])
        written = metrics.capture_rows.labels("requests")
        t0 = time.perf_counter()
        building = submitting = 0.0
        for i, exchange in enumerate(items):
            b0 = time.perf_counter()
            row = build_row(exchange, pricer)
            b1 = time.perf_counter()
            logbook.submit(row)  # the journal append (one write) and the queue
            submitting += time.perf_counter() - b1
            building += b1 - b0
            if i % batch_every == 0:
                await asyncio.sleep(0)  # let the writer's timer run, as request handlers do
        while written._value.get() < n:
            await asyncio.sleep(0.005)
        elapsed = time.perf_counter() - t0
        t1 = time.perf_counter()
        await logbook.close()
        seal_s = time.perf_counter() - t1
        sealed = open_segments(Path(tmp)).execute("SELECT count(DISTINCT request_id) FROM requests")
        count = (sealed.fetchone() or (0,))[0]
        return {"rows": n, "seconds": elapsed, "rows_per_s": n / elapsed, "sealed": count,
                "seal_s": seal_s, "spilled": metrics.capture_spilled._value.get(),
                "build_us": building / n * 1e6, "submit_us": submitting / n * 1e6}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--fsync-rows", type=int, default=2_000, help="rows of the fsync run")
    args = parser.parse_args()
    results = [asyncio.run(run(args.rows, 200)) for _ in range(args.runs)]
    fsynced = asyncio.run(run(args.fsync_rows, 200, fsync=True))
    print(f"\ncapture throughput: {args.rows} rows a run (1 in 4 streamed), {args.runs} runs, "
          f"then {args.fsync_rows} rows with [logbook] fsync = true\n")  # fmt: skip
    print("| run | rows/s | seconds | build us/row | journal+queue us/row | sealed rows | lost "
          "| seal s |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for i, r in [*enumerate(results, 1), ("fsync", fsynced)]:
        lost = r["rows"] - r["sealed"]
        print(f"| {i} | {r['rows_per_s']:,.0f} | {r['seconds']:.2f} | {r['build_us']:.1f} | "
              f"{r['submit_us']:.1f} | {r['sealed']:,} | {lost} | {r['seal_s']:.2f} |")  # fmt: skip
    rates = sorted(r["rows_per_s"] for r in results)
    print(f"\nmedian {rates[len(rates) // 2]:,.0f} rows/s (target >= 20,000)")


if __name__ == "__main__":
    main()
