"""Median latency of the control plane calls a replica makes in a loop, SQLite and PostgreSQL
in one run.

`versions()` is what every replica polls about twice a second; `write_snapshot` is the
leader's compare-and-set with one transition; `acquire_lease` is the leader's renewal. Both
backends run here, on this host: SQLite in WAL mode on a local file (synchronous=NORMAL: no
fsync at commit), and PostgreSQL started for the run (tests/services/postgres.py) reached over
TCP on loopback with a password, as a replica on another host would, minus the network: once
durable (fsync at every commit, Postgres's default) and once with fsync and synchronous_commit
off, which shows the round trips alone.

    .venv/bin/python bench/control_plane.py [--calls 2000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cluster.control import ControlPlane, open_control
from tests.services.postgres import find_bindir, postgres_at

SNAPSHOT = {"state": "canary", "version": "v3", "step": 1, "weight": 25,
            "checks": [{"name": "agreement", "value": 0.95, "ok": True}] * 4}  # fmt: skip
TRANSITION = {"at": 0.0, "from_state": "canary", "to_state": "canary", "step": 1, "weight": 25,
              "reason": "checks passed", "detail": "", "checks": []}  # fmt: skip


def median_us(call: Callable[[], object], n: int) -> float:
    for _ in range(min(n, 50)):  # warm: connection, prepared statements, page cache
        call()
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1e6


def measure(control: ControlPlane, n: int) -> dict[str, float]:
    for i in range(8):  # a few routes, as a real deployment polls
        control.write_snapshot(f"route{i}", None, SNAPSHOT, [TRANSITION])
    version = control.versions()["route0"]

    def cas() -> None:
        nonlocal version
        got = control.write_snapshot("route0", version, SNAPSHOT, [TRANSITION])
        assert got == version + 1
        version = got

    return {
        "versions()": median_us(control.versions, n),
        "write_snapshot (CAS + 1 transition)": median_us(cas, n),
        "acquire_lease (renewal)": median_us(
            lambda: control.acquire_lease("leader", "bench", 10.0), n
        ),
    }


@contextmanager
def backends() -> Iterator[dict[str, str]]:
    with tempfile.TemporaryDirectory(prefix="apprentice-control-") as tmp:
        urls = {"SQLite (WAL, local file)": f"sqlite://{tmp}/control.sqlite3"}
        bindir = find_bindir()
        if bindir is None:
            print("note: PostgreSQL not found (`apt-get install postgresql`): SQLite only\n")
            yield urls
            return
        with postgres_at(bindir, durable=True) as durable, postgres_at(bindir) as fast:
            urls["PostgreSQL (loopback TCP)"] = durable.url
            urls["PostgreSQL, fsync off"] = fast.url
            yield urls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000, help="Timed calls per operation.")
    args = parser.parse_args()
    results: dict[str, dict[str, float]] = {}
    with backends() as urls:
        for name, url in urls.items():
            control = open_control(url, "bench")
            results[name] = measure(control, args.calls)
            control.close()
    names = list(results)
    print(f"Median latency per call, µs ({args.calls} calls each, one thread)\n")
    print("| operation | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for op in next(iter(results.values())):
        print(f"| `{op}` | " + " | ".join(f"{results[n][op]:.0f}" for n in names) + " |")


if __name__ == "__main__":
    main()
